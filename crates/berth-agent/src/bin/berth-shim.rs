//! A stand-alone shim binary for tests: `berth-shim shim start|run <dir>`,
//! the same entry point the `berth` binary exposes as `berth shim ...`.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.split_first() {
        Some((first, rest)) if first == "shim" => berth_agent::shim_main(rest),
        _ => {
            eprintln!("usage: berth-shim shim start|run <container dir>");
            std::process::exit(2)
        }
    }
}
