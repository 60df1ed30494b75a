//! The `flotilla` binary; everything lives in the library.

// mimalloc returns freed memory to the system promptly, which keeps the operator's
// resident size close to what it holds rather than to its peak (large applies and lists
// allocate many short-lived JSON trees).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    flotilla::cli::main()
}
