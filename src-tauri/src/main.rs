// No console window next to the app on Windows release builds.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

fn main() {
    let profile = match confab_desktop::profile::Profile::from_process() {
        Ok(profile) => profile,
        Err(err) => {
            eprintln!("Confab could not start: {err}");
            std::process::exit(2);
        }
    };
    if let Err(err) = confab_desktop::run(profile) {
        eprintln!("Confab could not start: {err}");
        std::process::exit(1);
    }
}
