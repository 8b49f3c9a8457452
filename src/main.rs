fn main() {
    std::process::exit(ptt::cli::main());
}
