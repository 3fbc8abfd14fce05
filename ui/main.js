// Loads the wasm UI. A separate file, not an inline script, so the CSP can stay
// at script-src 'self'.
import init from "./confab_ui.js";
init();
