// glibc's per-thread arenas grow with one mprotect per step: on a parallel build of
// thousands of pages that was a large share of system time. mimalloc maps in bigger chunks.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // mimalloc asks for transparent huge pages, and the kernel zeroes a whole 2 MiB page on
    // its first touch: for a build that reads a few files and exits, that zeroing was a
    // third of its time (perf), and no run got faster with them.
    #[cfg(target_os = "linux")]
    let _ = rustix::thread::disable_transparent_huge_pages(true);
    relais::cli::main()
}
