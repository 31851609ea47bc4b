// Key Vault Secrets User for the Function App on the vault that holds AUTOPILOT_FUNCTION_KEYS,
// so the app setting can be a Key Vault reference. The vault must use the Azure RBAC
// permission model (the role only works there, per the built-in roles reference).

import { roleIds } from 'roles.bicep'

@description('Name of the existing Key Vault (in the resource group this module is deployed to).')
param vaultName string

@description('Object id of the Function App identity.')
param principalId string

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: vaultName
}

resource secretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, principalId, roleIds.keyVaultSecretsUser)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.keyVaultSecretsUser)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'MLOps Autopilot: resolve the AUTOPILOT_FUNCTION_KEYS Key Vault reference'
  }
}
