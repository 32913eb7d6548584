fn main() -> std::process::ExitCode {
    loopchat_relay::cli::main()
}
