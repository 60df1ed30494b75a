//! Environment and secrets: `default_env` as plain variables, `encrypted_env` as the
//! Fernet tokens of the pipeline's own Secret, and `secrets` as the keys allowed from the
//! shared Secret. Every variable name is checked; no value is decrypted here.

use std::collections::BTreeMap;

use serde_json::Value;

use super::translate::Translator;
use super::values::describe;
use crate::resource::error::ManifestError;
use crate::resource::validate::is_env_name;

impl Translator<'_> {
    pub(super) fn env_map(
        &mut self,
        field: &str,
        value: &Value,
    ) -> Result<BTreeMap<String, String>, ManifestError> {
        let entries = self.object(
            field,
            value,
            "an object of variables such as {\"LOG_LEVEL\": \"INFO\"}",
        )?;
        let mut env = BTreeMap::new();
        for (key, value) in entries {
            let path = format!("{field}.{key}");
            let text = match value {
                Value::String(text) => text.clone(),
                Value::Number(number) => number.to_string(),
                Value::Bool(flag) => flag.to_string(),
                Value::Null => {
                    self.warn(&path, "is null; left out (Fast-Flow sets only strings)");
                    continue;
                }
                other => {
                    return Err(self.error(
                        &path,
                        format!("expected a string value, found {}", describe(other)),
                    ));
                }
            };
            self.env_name(&path, key)?;
            env.insert(key.clone(), text);
        }
        Ok(env)
    }

    pub(super) fn encrypted_env(
        &self,
        field: &str,
        value: &Value,
    ) -> Result<BTreeMap<String, String>, ManifestError> {
        let entries = self.object(
            field,
            value,
            "an object of Fernet tokens such as {\"API_KEY\": \"gAAAAAB...\"}",
        )?;
        let mut data = BTreeMap::new();
        for (key, value) in entries {
            let path = format!("{field}.{key}");
            let token = self.string(&path, value, "a Fernet token (gAAAAAB...)")?;
            self.env_name(&path, key.trim())?;
            data.insert(key.trim().to_owned(), token);
        }
        Ok(data)
    }

    pub(super) fn secret_keys(&self, value: &Value) -> Result<Vec<String>, ManifestError> {
        let mut keys: Vec<String> = Vec::new();
        for (i, key) in self
            .string_list(
                "secrets",
                value,
                "a list of secret names such as [\"API_KEY\"]",
            )?
            .into_iter()
            .enumerate()
        {
            let key = key.trim().to_owned();
            self.env_name(&format!("secrets[{i}]"), &key)?;
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        Ok(keys)
    }

    fn env_name(&self, field: &str, name: &str) -> Result<(), ManifestError> {
        if is_env_name(name) {
            Ok(())
        } else {
            Err(self.error(
                field,
                format!("{name:?} is not a valid environment variable name (letters, digits and _, not starting with a digit)"),
            ))
        }
    }
}
