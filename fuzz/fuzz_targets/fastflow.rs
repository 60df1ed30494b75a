//! The Fast-Flow import: any `pipeline.json` in a folder holding `main.py` imports or
//! is refused with an error naming the file, and every document an import yields goes
//! through manifest validation without panicking.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use flotilla::resource::fastflow::import_folder;
use flotilla::resource::validate::validate_document;
use libfuzzer_sys::fuzz_target;

const FOLDER: &str = "nightly_etl";

/// A pipelines directory of this process (under the system temp dir) holding one
/// Fast-Flow folder; `scripts/fuzz.sh` removes it when the run ends.
fn root() -> &'static PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let root =
            std::env::temp_dir().join(format!("flotilla-fuzz-fastflow-{}", std::process::id()));
        std::fs::create_dir_all(root.join(FOLDER)).expect("create the pipelines directory");
        std::fs::write(root.join(FOLDER).join("main.py"), "print('hi')\n").expect("write main.py");
        root
    })
}

fuzz_target!(|bytes: &[u8]| {
    let root = root();
    std::fs::write(root.join(FOLDER).join("pipeline.json"), bytes).expect("write pipeline.json");
    let Ok(pipeline) = import_folder(root, FOLDER) else {
        return;
    };
    for document in &pipeline.documents {
        let _ = validate_document(document);
    }
});
