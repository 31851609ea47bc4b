// One role assignment on an existing storage account (deployed into that account's resource
// group, which may differ from the autopilot's). Used for the Azure ML workspace's default
// storage account, where the training jobs' evaluation.json lands.

@description('Name of the existing storage account (in the resource group this module is deployed to).')
param storageAccountName string

@description('Object id of the principal that gets the role (the Function App identity).')
param principalId string

@description('Built-in role definition GUID (see roles.bicep).')
param roleDefinitionGuid string

@description('Why this assignment exists (shown in the portal).')
param assignmentDescription string = ''

resource storageAccount 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource assignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storageAccount.id, principalId, roleDefinitionGuid)
  scope: storageAccount
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitionGuid)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: assignmentDescription
  }
}
