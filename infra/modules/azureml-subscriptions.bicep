// Event subscriptions of the Azure ML workspace's system topic to the Function App's Event Grid
// trigger `azureml_events` (eventDelivery='trigger', per event) or to its batched webhook
// `POST /api/events` (eventDelivery='webhook'), deployed into the workspace's resource group.
//
// Deploy this only after the function code is published: an AzureFunction destination names
// the function resource (<app id>/functions/azureml_events), which exists only once the app's
// functions are indexed. Event Grid then fetches the function's system key itself and does the
// subscription handshake with the Event Grid trigger ("Use a function as an event handler for
// Event Grid events", handler-functions doc).
//
// Filters ("Understand event filtering for Event Grid subscriptions", event-filtering doc):
//  - includedEventTypes: the five Azure ML event types ("Azure Machine Learning as an Event Grid
//    source", event-schema-machine-learning doc).
//  - Advanced filters apply to every event type of a subscription and are ANDed, and an event
//    that lacks the filter key does NOT match StringContains/StringIn but DOES match
//    StringNotIn. So:
//      'terminal'          (default) one subscription; drops RunStatusChanged events whose
//                          data.RunStatus is a non-terminal status with StringNotIn. Events of
//                          the other four types have no RunStatus key and pass. If the key were
//                          spelled differently in real deliveries (the design notes saw camelCase
//                          data keys), the filter fails OPEN: everything passes, nothing is lost.
//      'all'               one subscription, no advanced filter.
//      'monitorBreachOnly' RunStatusChanged gets its own subscription that passes only model
//                          monitor threshold breaches, with the filter from "Monitor performance
//                          of models deployed to production" (how-to-monitor-model-performance):
//                          key data.RunTags.azureml_modelmonitor_threshold_breached, operator
//                          StringContains, value "has failed due to one or more features
//                          violating metric thresholds" (or the given monitor signal names,
//                          "<monitor-name>_<signal>"). This filter fails CLOSED if the key
//                          spelling differs in real deliveries (breaches would be dropped), and
//                          failed/canceled training jobs then reach the service only through the
//                          reconciler. Verify with a real breach before choosing it.
// Delivery: EventGridSchema; retries for 24 h (1440 min) and up to 30 attempts; undeliverable
// events dead-lettered to a blob container with the system topic's managed identity.

@description('Name of the workspace system topic (created by azureml-topic.bicep).')
param systemTopicName string

@description('Resource id of the Function App (Microsoft.Web/sites).')
param functionAppId string

@description('Name of the Event Grid triggered function.')
param functionName string = 'azureml_events'

@description('Resource id of the storage account holding the dead-letter container.')
param deadLetterStorageAccountId string

param deadLetterContainerName string

@allowed([
  'terminal'
  'all'
  'monitorBreachOnly'
])
param runStatusChangedFilter string = 'terminal'

@description('monitorBreachOnly: monitor signal names ("<monitor>_<signal>") to pass; empty = any breach.')
param monitorSignalFilters array = []

@minValue(1)
@maxValue(30)
param maxDeliveryAttempts int = 30

@minValue(1)
@maxValue(1440)
param eventTimeToLiveInMinutes int = 1440

@minValue(1)
@maxValue(5000)
param maxEventsPerBatch int = 1

@minValue(1)
@maxValue(1024)
param preferredBatchSizeInKilobytes int = 64

@description('trigger: AzureFunction endpoint (the Event Grid trigger, one invocation per event); webhook: WebHook endpoint webhookUrl (POST /api/events, one invocation per delivered batch).')
@allowed([
  'trigger'
  'webhook'
])
param eventDelivery string = 'trigger'

@description('eventDelivery=webhook: https://<app host>/api/events?code=<function key of eventgrid_webhook>.')
@secure()
param webhookUrl string = ''

var prefix = 'Microsoft.MachineLearningServices.'
var lifecycleEventTypes = [
  '${prefix}ModelRegistered'
  '${prefix}ModelDeployed'
  '${prefix}RunCompleted'
  '${prefix}DatasetDriftDetected'
]
var runStatusChanged = '${prefix}RunStatusChanged'
// Non-terminal Azure ML run/job statuses (the same list the Azure ML adapter maps to
// queued/running in shared/adapters/azure_ml/common.py). Terminal ones (Completed, Failed, Canceled,
// NotResponding) pass.
var nonTerminalStatuses = [
  'NotStarted'
  'Queued'
  'Preparing'
  'Provisioning'
  'Starting'
  'Scheduled'
  'Paused'
  'Running'
  'Finalizing'
  'CancelRequested'
]
var breachText = 'has failed due to one or more features violating metric thresholds'
var breachOnly = runStatusChangedFilter == 'monitorBreachOnly'
var lifecycleTypesFiltered = breachOnly ? lifecycleEventTypes : concat(lifecycleEventTypes, [runStatusChanged])
var terminalOnlyFilter = [
  {
    operatorType: 'StringNotIn'
    key: 'data.RunStatus'
    values: nonTerminalStatuses
  }
]
var lifecycleAdvancedFilters = runStatusChangedFilter == 'terminal' ? terminalOnlyFilter : []
var breachValues = empty(monitorSignalFilters) ? [breachText] : monitorSignalFilters

var functionDestination = {
  endpointType: 'AzureFunction'
  properties: {
    resourceId: '${functionAppId}/functions/${functionName}'
    maxEventsPerBatch: maxEventsPerBatch
    preferredBatchSizeInKilobytes: preferredBatchSizeInKilobytes
  }
}
// The webhook answers Event Grid's SubscriptionValidationEvent handshake itself.
var webhookDestination = {
  endpointType: 'WebHook'
  properties: {
    endpointUrl: webhookUrl
    maxEventsPerBatch: maxEventsPerBatch
    preferredBatchSizeInKilobytes: preferredBatchSizeInKilobytes
  }
}
var destination = eventDelivery == 'webhook' ? webhookDestination : functionDestination
var retryPolicy = {
  maxDeliveryAttempts: maxDeliveryAttempts
  eventTimeToLiveInMinutes: eventTimeToLiveInMinutes
}
var deadLetter = {
  identity: {
    type: 'SystemAssigned'
  }
  deadLetterDestination: {
    endpointType: 'StorageBlob'
    properties: {
      resourceId: deadLetterStorageAccountId
      blobContainerName: deadLetterContainerName
    }
  }
}

resource systemTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' existing = {
  name: systemTopicName
}

resource lifecycle 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = {
  parent: systemTopic
  name: 'autopilot-azureml-events'
  properties: {
    destination: destination
    eventDeliverySchema: 'EventGridSchema'
    retryPolicy: retryPolicy
    deadLetterWithResourceIdentity: deadLetter
    filter: {
      includedEventTypes: lifecycleTypesFiltered
      advancedFilters: lifecycleAdvancedFilters
    }
  }
}

resource monitorBreaches 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = if (breachOnly) {
  parent: systemTopic
  name: breachSubscriptionName
  properties: {
    destination: destination
    eventDeliverySchema: 'EventGridSchema'
    retryPolicy: retryPolicy
    deadLetterWithResourceIdentity: deadLetter
    filter: {
      includedEventTypes: [
        runStatusChanged
      ]
      advancedFilters: [
        {
          operatorType: 'StringContains'
          key: 'data.RunTags.azureml_modelmonitor_threshold_breached'
          values: breachValues
        }
      ]
    }
  }
}

var breachSubscriptionName = 'autopilot-azureml-monitor-breaches'

output subscriptionNames array = breachOnly ? [lifecycle.name, breachSubscriptionName] : [lifecycle.name]
