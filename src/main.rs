// glibc's per-thread arenas grow with one mprotect per step: on a parallel build of
// thousands of pages that was a large share of system time. mimalloc maps in bigger chunks.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    relais::cli::main()
}
