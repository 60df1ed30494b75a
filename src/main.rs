//! The `flotilla` binary; everything lives in the library.

// mimalloc returns freed memory to the system promptly, which keeps the operator's
// resident size close to what it holds rather than to its peak (large applies and lists
// allocate many short-lived JSON trees). Built with `no_thp`: otherwise it asks for
// transparent huge pages on its arenas, and every 2 MiB page touched counts in full
// (an idle operator was at 37 MB instead of 22 MB).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    flotilla::cli::main()
}
