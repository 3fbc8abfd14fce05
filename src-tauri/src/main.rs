// No console window next to the app on Windows release builds.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

fn main() {
    if let Err(err) = confab_desktop::run() {
        eprintln!("Confab could not start: {err}");
        std::process::exit(1);
    }
}
