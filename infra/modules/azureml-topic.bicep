// Deployed into the Azure ML workspace's resource group:
//  - the Function App identity's roles on the workspace (least privilege for what the
//    adapters do: jobs, models, online endpoints/deployments, datastore reads; metrics of the
//    online endpoints, which are child resources of the workspace);
//  - the Event Grid system topic of the workspace (with a system-assigned identity, used to
//    write dead-lettered events to the autopilot's storage account).
//
// Topic type: 'Microsoft.MachineLearningServices.Workspaces' (Event Grid system topic types
// table; the Azure ML event source doc "Azure Machine Learning as an Event Grid source").
// A system topic lives in the region of its source resource ("System topics in Azure Event
// Grid", Location section), hence location = the workspace's location. Only one system topic
// can exist per source: if the workspace already has one (for example created from the portal's
// "Events" blade), pass its name as systemTopicName so this PUT updates it instead of failing.

import { roleIds } from 'roles.bicep'

@description('Name of the existing Azure ML workspace (in the resource group this module is deployed to).')
param workspaceName string

@description('Name of the Event Grid system topic for the workspace (new, or the existing one to update).')
param systemTopicName string

@description('Object id of the Function App system-assigned identity.')
param functionPrincipalId string

param tags object = {}

resource workspace 'Microsoft.MachineLearningServices/workspaces@2024-04-01' existing = {
  name: workspaceName
}

// AzureML Data Scientist: "Can perform all actions within an Azure Machine Learning workspace,
// except for creating or deleting compute resources and modifying the workspace itself."
// The autopilot submits jobs, registers/tags model versions, creates/deletes online deployments,
// sets endpoint traffic and reads datastores (evaluation.json); it never creates compute or
// changes the workspace. No narrower built-in role covers online deployments + jobs + models.
resource dataScientist 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(workspace.id, functionPrincipalId, roleIds.azureMLDataScientist)
  scope: workspace
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.azureMLDataScientist)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
    description: 'MLOps Autopilot: retraining jobs, model registration, blue/green rollouts'
  }
}

// Monitoring Reader on the workspace: Azure Monitor platform metrics of the online endpoints
// (RequestsPerMinute, RequestLatency_P95) through the metrics data plane (MetricsClient).
// The endpoints are child resources of the workspace, so the assignment is inherited.
resource monitoringReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(workspace.id, functionPrincipalId, roleIds.monitoringReader)
  scope: workspace
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.monitoringReader)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
    description: 'MLOps Autopilot: online endpoint health metrics'
  }
}

resource systemTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' = {
  name: systemTopicName
  location: workspace.location
  tags: tags
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    source: workspace.id
    topicType: 'Microsoft.MachineLearningServices.Workspaces'
  }
}

@description('Region of the workspace (= region of its online endpoints, for the metrics data plane).')
output workspaceLocation string = workspace.location

@description('Object id of the system topic identity (needs write access to the dead-letter container).')
output systemTopicPrincipalId string = systemTopic.identity.principalId

output systemTopicId string = systemTopic.id
