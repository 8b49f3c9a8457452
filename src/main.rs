//! The `ptt` binary: all of it lives in the library (`ptt::cli::main`), so that integration tests and benches
//! reach the same code the binary runs.

fn main() {
    std::process::exit(ptt::cli::main());
}
