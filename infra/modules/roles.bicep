// Built-in Azure role definition ids used by this deployment (the same GUIDs in every tenant).
//
// Source for every id below: "Azure built-in roles" reference,
// https://learn.microsoft.com/azure/role-based-access-control/built-in-roles
// (articles/role-based-access-control/built-in-roles.md, the per-category tables "Built-in role |
// Description | ID"). Cross-checked against the Azure-Samples Flex Consumption Bicep sample
// (IaC/bicep/rbac.bicep in Azure-Samples/azure-functions-flex-consumption-samples) for the
// Storage Blob Data Owner, Storage Queue Data Contributor, Storage Table Data Contributor and
// Monitoring Metrics Publisher ids. None of them was typed from memory alone.

@export()
@description('Built-in role definition GUIDs, by role.')
var roleIds = {
  // Storage section of the built-in roles reference
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b' // Storage Blob Data Owner
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe' // Storage Blob Data Contributor
  storageBlobDataReader: '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1' // Storage Blob Data Reader
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3' // Storage Table Data Contributor
  // Monitor section
  monitoringReader: '43d0d8ad-25c7-4714-9337-8ba259a9fe05' // Monitoring Reader
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb' // Monitoring Metrics Publisher
  logAnalyticsReader: '73c42c96-874c-492b-b04d-ab87d138a893' // Log Analytics Reader
  // Integration section
  eventGridDataSender: 'd5a91429-5739-47e2-a06b-3470a27159e7' // EventGrid Data Sender
  // AI + machine learning section
  azureMLDataScientist: 'f6c7c914-8db3-469d-8ca1-694a8f32e121' // AzureML Data Scientist
  // Security section (also listed in the Key Vault "Azure RBAC" guide)
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6' // Key Vault Secrets User
}
