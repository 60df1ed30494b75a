//! The `flotilla` binary; everything lives in the library.

fn main() -> std::process::ExitCode {
    flotilla::cli::main()
}
