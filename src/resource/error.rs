//! The error every manifest problem becomes: where it is (file, document, line, column,
//! field) and what is wrong, with a stable machine code.

use std::fmt;

use serde::Serialize;

/// A problem with user input, located as precisely as the input allows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ManifestError {
    /// Stable machine code, e.g. `validation.failed`.
    pub code: &'static str,
    /// File the input came from (`<stdin>`, `pipelines/etl/pipeline.json`).
    pub file: String,
    /// 1-based document index within the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document: Option<usize>,
    /// 1-based line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// 1-based column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<u64>,
    /// Field path such as `spec.resources.memory`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// What is wrong and, where possible, how to fix it.
    pub message: String,
}

impl ManifestError {
    /// An error about a whole file.
    pub fn file(file: &str, message: impl Into<String>) -> Self {
        Self {
            code: "validation.failed",
            file: file.to_owned(),
            document: None,
            line: None,
            column: None,
            field: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for ManifestError {
    /// `file:line:column: document N: field: message`, omitting what is unknown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        if let Some(document) = self.document {
            write!(f, ": document {document}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": {field}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ManifestError {}

/// Several manifest errors, reported together so a user fixes them in one go.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ManifestErrors(pub Vec<ManifestError>);

impl fmt::Display for ManifestErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ManifestErrors {}

impl From<ManifestError> for ManifestErrors {
    fn from(error: ManifestError) -> Self {
        Self(vec![error])
    }
}
