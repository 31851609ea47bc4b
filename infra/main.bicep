// MLOps Autopilot on Azure: the Function App and what it needs around an EXISTING Azure
// Machine Learning workspace. Deploy into the autopilot's own resource group:
//
//   az deployment group create -g <rg> --template-file infra/main.bicep \
//     --parameters @infra/main.parameters.json
//
// Two passes (see docs/deploy.md): 1) wireEvents=false creates everything but the Event Grid
// subscriptions and the alerts function key; publish the code; 2) wireEvents=true adds them
// (an AzureFunction destination and a function key need the published functions to exist).
//
// Status: written against the resource reference docs cited in each comment; NOT compiled by
// the Bicep CLI (none could be installed from the registries reachable where it was written)
// and never deployed. It was only parsed for syntax (tree-sitter-bicep). Run `az bicep build
// --file infra/main.bicep` and `az deployment group what-if` before the first real deployment.
//
// Hosting plan: Flex Consumption (FC1, Linux only), chosen over the Linux Consumption (Y1) and
// Elastic Premium (EP1) plans because
//  - Linux Consumption gets no new features and is being retired for Linux (30 Sept 2028,
//    Flex Consumption migration guide); Flex Consumption is where Functions invests now;
//  - Flex supports Python 3.11, identity-only storage (deployment package container and
//    AzureWebJobsStorage through the managed identity, no account keys), scale to zero with
//    pay-per-execution, optional always-ready instances and VNet integration, and every
//    trigger this app uses (Event Grid, HTTP, timer; only Kafka, Azure SQL and SignalR
//    triggers are unsupported per the Flex Consumption "Considerations");
//  - EP1 would add an always-on instance bill for a service that is idle most of the time.
// Flex specifics honoured here: runtime and version live in functionAppConfig.runtime (no
// FUNCTIONS_WORKER_RUNTIME / FUNCTIONS_EXTENSION_VERSION / WEBSITE_RUN_FROM_PACKAGE app
// settings, per "Flex Consumption plan deprecations" in the Functions app settings reference);
// the runtime is always Functions 4.x; one app per plan; no deployment slots.
// Resource shapes follow the Azure-Samples Flex Consumption Bicep sample
// (Azure-Samples/azure-functions-flex-consumption-samples, IaC/bicep/main.bicep).

targetScope = 'resourceGroup'

import { roleIds } from 'modules/roles.bicep'

// ---------------------------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------------------------

@description('Short lowercase name (letters and digits) from which resource names are derived.')
@minLength(3)
@maxLength(11)
param baseName string

@description('Region of the autopilot resources (must offer Flex Consumption: az functionapp list-flexconsumption-locations).')
param location string = resourceGroup().location

@description('Resource id of the existing Azure ML workspace: /subscriptions/<sub>/resourceGroups/<rg>/providers/Microsoft.MachineLearningServices/workspaces/<name>.')
param amlWorkspaceId string

@description('Online endpoints of that workspace the autopilot rolls out to (the policy rollout.endpoint values). Becomes AUTOPILOT_ENDPOINT_RESOURCE_IDS.')
@minLength(1)
param onlineEndpointNames array

@description('Resource id of the existing storage account behind the workspace default datastore (az ml workspace show --query storage_account). Empty: no role there.')
param workspaceStorageAccountId string = ''

@description('Access of the Function App to that storage account: read (evaluation.json through an identity-based datastore), write (also code uploads when the datastore is identity-based), none.')
@allowed([
  'none'
  'read'
  'write'
])
param workspaceStorageAccess string = 'read'

@description('Container of the workspace default blob datastore, workspaceblobstore (az ml datastore show -n workspaceblobstore --query container_name; azureml-blobstore-<guid>). With workspaceStorageAccountId and read access: AUTOPILOT_COLLECTOR_CONTAINER_URL, where estimated_performance reads the data collector\'s model outputs and azureml://datastores/workspaceblobstore/paths/... ground truth. Empty: not set.')
param workspaceBlobContainer string = ''

@description('Resource id of an existing Log Analytics workspace that receives the online endpoints\' logs (AmlOnlineEndpointTrafficLog). Empty: the workspace created here.')
param endpointLogsWorkspaceId string = ''

@description('Policy file path inside the published app (AUTOPILOT_POLICY).')
param policyPath string = 'examples/azureml/policy.yaml'

@description('Managed online deployment YAML used for new deployments (AUTOPILOT_DEPLOYMENT_TEMPLATE); empty = the adapter\'s minimal default.')
param deploymentTemplatePath string = 'examples/azureml/deployment.yml'

@description('NCRONTAB schedule of the reconciler timer (AUTOPILOT_RECONCILE_SCHEDULE).')
param reconcileSchedule string = '0 */1 * * * *'

@description('Region of the online endpoints for the Azure Monitor metrics data plane (AUTOPILOT_METRICS_REGION). Empty: the workspace region.')
param metricsRegion string = ''

@description('Operator keys as {"<name>": "<key>"} (keys: 32+ URL-safe characters, e.g. openssl rand -hex 32). Each becomes a host-level function key (second pass) and an entry of AUTOPILOT_FUNCTION_KEYS; the name is the actor recorded in the audit log.')
@secure()
param operatorFunctionKeys object = {}

@description('Key the Azure Monitor action group sends to /api/alerts (32+ URL-safe characters). Registered as a function key of receive_alert only (second pass) and appended to AUTOPILOT_FUNCTION_KEYS as <alertsKeyName>=<key>.')
@secure()
@minLength(16)
param alertsWebhookKey string

@description('Name of the alerts key (the audit actor for alerts).')
param alertsKeyName string = 'alerts'

@description('Optional: resource id of a Key Vault (Azure RBAC model) holding the whole AUTOPILOT_FUNCTION_KEYS value ("name=key,...", including <alertsKeyName>=<alertsWebhookKey>) as a secret. The app setting then becomes a Key Vault reference; operatorFunctionKeys is still used to register the host keys, so pass the same keys (or none, and register them with az functionapp keys set).')
param functionKeysKeyVaultId string = ''

@description('Secret name in that Key Vault.')
param functionKeysSecretName string = 'autopilot-function-keys'

@description('Second pass, after the code is published: create the Event Grid subscriptions and the alerts function key.')
param wireEvents bool = false

@description('How RunStatusChanged is filtered (see modules/azureml-subscriptions.bicep).')
@allowed([
  'terminal'
  'all'
  'monitorBreachOnly'
])
param runStatusChangedFilter string = 'terminal'

@description('monitorBreachOnly: monitor signal names to pass ("<monitor>_<signal>"); empty = any breach.')
param monitorSignalFilters array = []

@description('Event Grid retry policy: attempts (max 30) and time to live in minutes (max 1440 = 24 h).')
@minValue(1)
@maxValue(30)
param eventMaxDeliveryAttempts int = 30

@minValue(1)
@maxValue(1440)
param eventTimeToLiveInMinutes int = 1440

@description('Where Azure ML events are delivered: trigger = the Event Grid trigger azureml_events (AzureFunction endpoint: one invocation per event, Event Grid fetches the key); webhook = POST /api/events (WebHook endpoint with eventsWebhookKey in its URL: one invocation per delivered batch). See docs/deploy.md.')
@allowed([
  'trigger'
  'webhook'
])
param eventDelivery string = 'trigger'

@description('Events per Event Grid delivery (1 = a failure retries only that event). The trigger is invoked once per event whatever this is; the webhook once per delivery (up to 5000).')
@minValue(1)
@maxValue(5000)
param eventMaxEventsPerBatch int = 1

@description('Preferred size of one delivery in KB (webhook: up to 1024, the most /api/events accepts).')
@minValue(1)
@maxValue(1024)
param eventPreferredBatchSizeInKilobytes int = 64

@description('eventDelivery=webhook: the key in the webhook URL (32+ URL-safe characters). Registered as a function key of eventgrid_webhook only (second pass) and appended to AUTOPILOT_FUNCTION_KEYS as <eventsKeyName>=<key>. Unused with the trigger.')
@secure()
param eventsWebhookKey string = ''

@description('Name of the webhook key (the audit actor for webhook deliveries).')
param eventsKeyName string = 'eventgrid'

@description('Name of the workspace\'s Event Grid system topic. Give the existing one\'s name if the workspace already has a system topic (only one per source).')
param systemTopicName string = ''

@description('Tables created for the state store and audit log (the Table Storage adapter may also create its own).')
param tableNames array = [
  'autopilotstate'
  'autopilotaudit'
]

@description('Flex Consumption scale limit and instance size.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

param tags object = {}

// ---------------------------------------------------------------------------------------------
// Names and derived values
// ---------------------------------------------------------------------------------------------

var token = take(toLower(uniqueString(resourceGroup().id, baseName)), 6)
var base = toLower(baseName)
var functionAppName = 'func-${base}-${token}'
var planName = 'plan-${base}-${token}'
var storageAccountName = take(replace('st${base}${token}', '-', ''), 24)
var logAnalyticsName = 'log-${base}-${token}'
var appInsightsName = 'appi-${base}-${token}'
var eventsTopicName = 'evgt-${base}-${token}'
var actionGroupName = 'ag-${base}-${token}'
var deploymentContainerName = 'app-package'
var deadLetterContainerName = 'eventgrid-deadletter'

var amlParts = split(amlWorkspaceId, '/')
var amlSubscriptionId = amlParts[2]
var amlResourceGroup = amlParts[4]
var amlWorkspaceName = last(amlParts)
var resolvedSystemTopicName = empty(systemTopicName) ? 'evgst-${amlWorkspaceName}' : systemTopicName

// {"<endpoint>": "<workspace id>/onlineEndpoints/<endpoint>"} (AzureMonitorMetrics resource ids)
var endpointResourceIds = toObject(onlineEndpointNames, ep => ep, ep => '${amlWorkspaceId}/onlineEndpoints/${ep}')

var useKeyVaultForKeys = !empty(functionKeysKeyVaultId)
var alertsKeyEntry = '${alertsKeyName}=${alertsWebhookKey}'
var operatorKeyEntries = [for item in items(operatorFunctionKeys): '${item.key}=${item.value}']
var useWebhook = eventDelivery == 'webhook'
var eventsKeyEntries = useWebhook ? ['${eventsKeyName}=${eventsWebhookKey}'] : []
var keysFromParameters = join(concat(operatorKeyEntries, [alertsKeyEntry], eventsKeyEntries), ',')
// App Service Key Vault reference syntax: @Microsoft.KeyVault(VaultName=...;SecretName=...)
var keyVaultReference = '@Microsoft.KeyVault(VaultName=${last(split(functionKeysKeyVaultId, '/'))};SecretName=${functionKeysSecretName})'
var functionKeysSetting = useKeyVaultForKeys ? keyVaultReference : keysFromParameters

// Scopes of the cross-resource-group role modules. A conditional module's scope may still be
// evaluated when its condition is false, so every id falls back to something well-formed.
var useOwnLogAnalytics = empty(endpointLogsWorkspaceId)
var logsParts = split(useOwnLogAnalytics ? '${resourceGroup().id}/providers/Microsoft.OperationalInsights/workspaces/${logAnalyticsName}' : endpointLogsWorkspaceId, '/')
var grantWorkspaceStorage = !empty(workspaceStorageAccountId) && workspaceStorageAccess != 'none'
var workspaceStorageParts = split(empty(workspaceStorageAccountId) ? '${resourceGroup().id}/providers/Microsoft.Storage/storageAccounts/none' : workspaceStorageAccountId, '/')
// estimated_performance: the collector's output and ground truth, read with the identity (the
// Storage Blob Data Reader or Contributor role on that account, below)
var collectorContainerUrl = grantWorkspaceStorage && !empty(workspaceBlobContainer) ? 'https://${last(workspaceStorageParts)}.blob.${environment().suffixes.storage}/${workspaceBlobContainer}' : ''
var keyVaultParts = split(useKeyVaultForKeys ? functionKeysKeyVaultId : '${resourceGroup().id}/providers/Microsoft.KeyVault/vaults/none', '/')

var blobServiceUri = 'https://${storageAccountName}.blob.${environment().suffixes.storage}'
var tableServiceUri = 'https://${storageAccountName}.table.${environment().suffixes.storage}'

// ---------------------------------------------------------------------------------------------
// Monitoring: Log Analytics workspace + workspace-based Application Insights (Entra auth only)
// ---------------------------------------------------------------------------------------------

resource logAnalytics 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: 30
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: appInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logAnalytics.id
    DisableLocalAuth: true // telemetry only with Entra ID (APPLICATIONINSIGHTS_AUTHENTICATION_STRING)
  }
}

// ---------------------------------------------------------------------------------------------
// Storage: host storage (AzureWebJobsStorage, identity-based), Flex deployment package container,
// Event Grid dead-letter container, and the Table service for the state store and audit log.
// Shared-key access is off: every client (host, deployment, tables, Event Grid dead-lettering)
// authenticates with Microsoft Entra ID.
// ---------------------------------------------------------------------------------------------

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: storageAccountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
}

resource deadLetterContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deadLetterContainerName
}

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource tables 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = [
  for tableName in tableNames: {
    parent: tableService
    name: tableName
  }
]

// ---------------------------------------------------------------------------------------------
// Event Grid custom topic for our own lifecycle events, CloudEvents 1.0 input schema, Entra ID
// only (the publisher uses DefaultAzureCredential + EventGrid Data Sender).
// ---------------------------------------------------------------------------------------------

resource eventsTopic 'Microsoft.EventGrid/topics@2022-06-15' = {
  name: eventsTopicName
  location: location
  tags: tags
  properties: {
    inputSchema: 'CloudEventSchemaV1_0'
    disableLocalAuth: true
    publicNetworkAccess: 'Enabled'
  }
}

// ---------------------------------------------------------------------------------------------
// Function App: Flex Consumption, Linux, Python 3.11, Functions 4.x, system-assigned identity
// ---------------------------------------------------------------------------------------------

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true // Linux
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  name: functionAppName
  location: location
  tags: tags
  kind: 'functionapp,linux'
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${blobServiceUri}/${deploymentContainerName}'
          authentication: {
            type: 'SystemAssignedIdentity'
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
  dependsOn: [
    deploymentContainer
  ]
}

// The workspace side: roles on the workspace and its Event Grid system topic.
module amlTopic 'modules/azureml-topic.bicep' = {
  name: 'autopilot-aml-topic'
  scope: resourceGroup(amlSubscriptionId, amlResourceGroup)
  params: {
    workspaceName: amlWorkspaceName
    systemTopicName: resolvedSystemTopicName
    functionPrincipalId: functionApp.identity.principalId
    tags: tags
  }
}

// Log Analytics Reader where the endpoints' request logs are, and that workspace's customer id.
module endpointLogs 'modules/role-loganalytics.bicep' = {
  name: 'autopilot-endpoint-logs'
  scope: resourceGroup(logsParts[2], logsParts[4])
  params: {
    workspaceName: last(logsParts)
    principalId: functionApp.identity.principalId
  }
  dependsOn: [
    logAnalytics
  ]
}

// Storage behind the workspace default datastore (evaluation.json, the data collector's model
// outputs and ground truth for estimated_performance; code uploads if 'write').
module workspaceStorageRole 'modules/role-storage.bicep' = if (grantWorkspaceStorage) {
  name: 'autopilot-aml-storage'
  scope: resourceGroup(workspaceStorageParts[2], workspaceStorageParts[4])
  params: {
    storageAccountName: last(workspaceStorageParts)
    principalId: functionApp.identity.principalId
    roleDefinitionGuid: workspaceStorageAccess == 'write' ? roleIds.storageBlobDataContributor : roleIds.storageBlobDataReader
    assignmentDescription: 'MLOps Autopilot: read training job outputs (evaluation.json), collected model outputs and ground truth from the workspace datastore'
  }
}

module functionKeysVaultRole 'modules/role-keyvault.bicep' = if (useKeyVaultForKeys) {
  name: 'autopilot-keys-vault'
  scope: resourceGroup(keyVaultParts[2], keyVaultParts[4])
  params: {
    vaultName: last(keyVaultParts)
    principalId: functionApp.identity.principalId
  }
}

// ---------------------------------------------------------------------------------------------
// App settings. Names are exactly those read by shared/settings.py.
// ---------------------------------------------------------------------------------------------

resource appSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: functionApp
  name: 'appsettings'
  properties: {
    // Host storage through the managed identity ("Connecting to host storage with an identity",
    // Functions developer reference). No queue URI: nothing here uses queues.
    AzureWebJobsStorage__credential: 'managedidentity'
    AzureWebJobsStorage__blobServiceUri: blobServiceUri
    AzureWebJobsStorage__tableServiceUri: tableServiceUri
    APPLICATIONINSIGHTS_CONNECTION_STRING: appInsights.properties.ConnectionString
    APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'Authorization=AAD'

    // The autopilot
    AUTOPILOT_PLATFORM: 'azure'
    AUTOPILOT_STORE: 'table'
    AUTOPILOT_POLICY: policyPath
    AUTOPILOT_RECONCILE_SCHEDULE: reconcileSchedule
    AUTOPILOT_FUNCTION_KEYS: functionKeysSetting
    // Writable scratch space: the app package is read-only (run from package).
    AUTOPILOT_DATA_DIR: '/tmp/autopilot'
    AUTOPILOT_AZUREML_SUBSCRIPTION_ID: amlSubscriptionId
    AUTOPILOT_AZUREML_RESOURCE_GROUP: amlResourceGroup
    AUTOPILOT_AZUREML_WORKSPACE: amlWorkspaceName
    AUTOPILOT_ENDPOINT_RESOURCE_IDS: string(endpointResourceIds)
    AUTOPILOT_METRICS_REGION: empty(metricsRegion) ? amlTopic.outputs.workspaceLocation : metricsRegion
    AUTOPILOT_DEPLOYMENT_TEMPLATE: deploymentTemplatePath
    AUTOPILOT_TABLE_ENDPOINT: tableServiceUri
    AUTOPILOT_EVENTS_TOPIC_ENDPOINT: eventsTopic.properties.endpoint
    AUTOPILOT_LOG_WORKSPACE_ID: endpointLogs.outputs.customerId
    AUTOPILOT_COLLECTOR_CONTAINER_URL: collectorContainerUrl
  }
  dependsOn: [
    functionKeysVaultRole
  ]
}

// ---------------------------------------------------------------------------------------------
// Role assignments of the Function App identity in this resource group (least privilege)
// ---------------------------------------------------------------------------------------------

// Host storage: Storage Blob Data Owner is the minimum role for AzureWebJobsStorage through an
// identity (Functions developer reference, "Connecting to host storage with an identity"); it
// also covers reading the Flex deployment package container.
resource hostBlobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, functionApp.id, roleIds.storageBlobDataOwner)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.storageBlobDataOwner)
    principalId: functionApp.identity.principalId
    principalType: 'ServicePrincipal'
    description: 'MLOps Autopilot: Functions host storage and deployment package'
  }
}

// State store and audit log tables (and the host's diagnostic events table).
resource tableContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, functionApp.id, roleIds.storageTableDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.storageTableDataContributor)
    principalId: functionApp.identity.principalId
    principalType: 'ServicePrincipal'
    description: 'MLOps Autopilot: state store and audit log tables'
  }
}

// Publish lifecycle events to our custom topic only.
resource topicSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(eventsTopic.id, functionApp.id, roleIds.eventGridDataSender)
  scope: eventsTopic
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.eventGridDataSender)
    principalId: functionApp.identity.principalId
    principalType: 'ServicePrincipal'
    description: 'MLOps Autopilot: publish lifecycle CloudEvents'
  }
}

// Application Insights with local auth disabled accepts telemetry from identities holding
// Monitoring Metrics Publisher on the component.
resource telemetryPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, functionApp.id, roleIds.monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.monitoringMetricsPublisher)
    principalId: functionApp.identity.principalId
    principalType: 'ServicePrincipal'
    description: 'MLOps Autopilot: Application Insights telemetry with Entra ID'
  }
}

// The workspace system topic's identity writes dead-lettered events to this container only.
resource deadLetterWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(deadLetterContainer.id, resolvedSystemTopicName, roleIds.storageBlobDataContributor)
  scope: deadLetterContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.storageBlobDataContributor)
    principalId: amlTopic.outputs.systemTopicPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Event Grid system topic of the Azure ML workspace: dead-letter undeliverable events'
  }
}

// ---------------------------------------------------------------------------------------------
// Azure Monitor action group: webhook to /api/alerts with the common alert schema.
// The URL carries the alerts key as ?code=...: the Functions host checks it (function key of
// receive_alert, created in the second pass) and so does the app (AUTOPILOT_FUNCTION_KEYS).
// Anyone who can read the action group can read the URL; keep its RBAC tight.
// ---------------------------------------------------------------------------------------------

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: actionGroupName
  location: 'Global'
  tags: tags
  properties: {
    groupShortName: take('autopilot${base}', 12)
    enabled: true
    webhookReceivers: [
      {
        name: 'autopilot-alerts'
        serviceUri: 'https://${functionApp.properties.defaultHostName}/api/alerts?code=${alertsWebhookKey}'
        useCommonAlertSchema: true
        useAadAuth: false
      }
    ]
  }
}

// ---------------------------------------------------------------------------------------------
// Second pass (wireEvents=true), after `func azure functionapp publish`
// ---------------------------------------------------------------------------------------------

resource receiveAlertFunction 'Microsoft.Web/sites/functions@2024-04-01' existing = {
  parent: functionApp
  name: 'receive_alert'
}

// The Functions host checks keys before the app does (auth level FUNCTION), so every key in
// AUTOPILOT_FUNCTION_KEYS must also be a key the host knows.
// Operator keys: host-level function keys, valid for every FUNCTION-level route. Documented in
// "Automate resource deployment for your function app" (Function access keys); the Bicep type
// registry has no type for it, so `az bicep build` warns (BCP081) and passes it through.
resource operatorHostKeys 'Microsoft.Web/sites/host/functionKeys@2022-09-01' = [
  for item in items(operatorFunctionKeys): if (wireEvents) {
    name: '${functionApp.name}/default/${item.key}'
    properties: {
      name: item.key
      value: item.value
    }
  }
]

// Alerts key: a function-level key, valid at the host only for receive_alert (POST /api/alerts).
resource alertsFunctionKey 'Microsoft.Web/sites/functions/keys@2024-04-01' = if (wireEvents) {
  parent: receiveAlertFunction
  name: alertsKeyName
  value: alertsWebhookKey
}

resource eventsWebhookFunction 'Microsoft.Web/sites/functions@2024-04-01' existing = {
  parent: functionApp
  name: 'eventgrid_webhook'
}

// Webhook key: a function-level key, valid at the host only for eventgrid_webhook (POST
// /api/events). Event Grid sends it as ?code=... from the subscription's endpoint URL.
resource eventsFunctionKey 'Microsoft.Web/sites/functions/keys@2024-04-01' = if (wireEvents && useWebhook) {
  parent: eventsWebhookFunction
  name: eventsKeyName
  value: eventsWebhookKey
}

module amlSubscriptions 'modules/azureml-subscriptions.bicep' = if (wireEvents) {
  name: 'autopilot-aml-subscriptions'
  scope: resourceGroup(amlSubscriptionId, amlResourceGroup)
  params: {
    systemTopicName: resolvedSystemTopicName
    functionAppId: functionApp.id
    functionName: 'azureml_events'
    deadLetterStorageAccountId: storage.id
    deadLetterContainerName: deadLetterContainerName
    runStatusChangedFilter: runStatusChangedFilter
    monitorSignalFilters: monitorSignalFilters
    maxDeliveryAttempts: eventMaxDeliveryAttempts
    eventTimeToLiveInMinutes: eventTimeToLiveInMinutes
    maxEventsPerBatch: eventMaxEventsPerBatch
    preferredBatchSizeInKilobytes: eventPreferredBatchSizeInKilobytes
    eventDelivery: eventDelivery
    webhookUrl: useWebhook ? 'https://${functionApp.properties.defaultHostName}/api/events?code=${eventsWebhookKey}' : ''
  }
  dependsOn: [
    amlTopic
    deadLetterWriter
    appSettings
    eventsFunctionKey
  ]
}

// ---------------------------------------------------------------------------------------------
// Outputs
// ---------------------------------------------------------------------------------------------

output functionAppName string = functionApp.name
output functionAppHostName string = functionApp.properties.defaultHostName
output functionAppPrincipalId string = functionApp.identity.principalId
output storageAccountName string = storage.name
output deadLetterContainer string = deadLetterContainerName
output eventsTopicEndpoint string = eventsTopic.properties.endpoint
output systemTopicName string = resolvedSystemTopicName
output actionGroupId string = actionGroup.id
output logAnalyticsWorkspaceId string = logAnalytics.id
