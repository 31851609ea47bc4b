// Log Analytics Reader for the Function App on the Log Analytics workspace that receives the
// Azure ML online endpoints' logs (table AmlOnlineEndpointTrafficLog), and that workspace's
// customer id (a GUID), which is what LogsQueryClient.query_workspace takes
// (app setting AUTOPILOT_LOG_WORKSPACE_ID).

import { roleIds } from 'roles.bicep'

@description('Name of the existing Log Analytics workspace (in the resource group this module is deployed to).')
param workspaceName string

@description('Object id of the Function App identity.')
param principalId string

resource logAnalytics 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = {
  name: workspaceName
}

resource reader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(logAnalytics.id, principalId, roleIds.logAnalyticsReader)
  scope: logAnalytics
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.logAnalyticsReader)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'MLOps Autopilot: KQL over AmlOnlineEndpointTrafficLog and drift signals'
  }
}

@description('The workspace id (customer id GUID) for LogsQueryClient.')
output customerId string = logAnalytics.properties.customerId
