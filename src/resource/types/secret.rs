//! `Secret`: Fernet-encrypted values, safe to commit to git.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Desired state of a secret.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "flotilla.dev",
    version = "v1alpha1",
    kind = "Secret",
    namespaced,
    status = "SecretStatus",
    shortname = "sec"
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretSpec {
    /// Key → Fernet token. Safe to commit; only the operator's key decrypts it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub encrypted_data: BTreeMap<String, String>,
    /// Key → plaintext, accepted on apply only: it is encrypted before it is stored and
    /// never returned.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub string_data: BTreeMap<String, String>,
}

/// Observed state of a secret.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretStatus {
    /// Keys the secret holds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
}
