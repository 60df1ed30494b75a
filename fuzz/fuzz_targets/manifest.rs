//! The manifest reader: any text, read as multi-document YAML, then every document
//! validated as `flotilla apply` does. Errors are fine; a panic or a hang is not.
#![no_main]

use flotilla::resource::manifest::parse_documents;
use flotilla::resource::validate::validate_document;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let Ok(documents) = parse_documents("fuzz.yaml", text) else {
        return;
    };
    for document in &documents {
        let _ = document.kind();
        let _ = document.position();
        let _ = validate_document(document);
    }
});
