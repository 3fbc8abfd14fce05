//! Secrets at rest: the OS keyring (Secret Service on Linux, Keychain on macOS,
//! Credential Manager on Windows) through `keyring-core` and its platform
//! stores. Nothing secret is ever written anywhere else.
//!
//! Keyring calls block (D-Bus, Keychain), so async callers go through
//! [`Vault::load`] and friends on a blocking thread.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use keyring_core::{CredentialStore, Entry};

/// The keyring service name all of Confab's entries live under.
pub const SERVICE: &str = "app.confab.desktop";

/// The keyring could not be used. The message is for people; the session maps
/// it to "you will have to sign in again next time".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the system keyring is unavailable: {0}")]
pub struct VaultError(pub String);

/// Where secrets are kept between runs.
pub trait SecretStore: Send + Sync + 'static {
    fn load(&self, key: &str) -> Result<Option<String>, VaultError>;
    fn save(&self, key: &str, secret: &str) -> Result<(), VaultError>;
    fn delete(&self, key: &str) -> Result<(), VaultError>;
}

/// A [`SecretStore`] shared across tasks, with async wrappers that keep the
/// blocking keyring calls off the async threads.
#[derive(Clone)]
pub struct Vault(Arc<dyn SecretStore>);

impl Vault {
    pub fn new(store: impl SecretStore) -> Self {
        Self(Arc::new(store))
    }

    /// The platform keyring, under [`SERVICE`].
    pub fn system() -> Self {
        Self::system_named(SERVICE)
    }

    /// The platform keyring under another service name (an app profile keeps
    /// its own secrets).
    pub fn system_named(service: &str) -> Self {
        Self::new(SystemKeyring {
            service: service.to_owned(),
            store: OnceLock::new(),
        })
    }

    pub async fn load(&self, key: &'static str) -> Result<Option<String>, VaultError> {
        let store = self.0.clone();
        blocking(move || store.load(key)).await
    }

    pub async fn save(&self, key: &'static str, secret: String) -> Result<(), VaultError> {
        let store = self.0.clone();
        blocking(move || store.save(key, &secret)).await
    }

    pub async fn delete(&self, key: &'static str) -> Result<(), VaultError> {
        let store = self.0.clone();
        blocking(move || store.delete(key)).await
    }
}

/// A keyring that does not answer (an unlock prompt nobody sees, a hung
/// daemon) counts as unavailable after this long.
const KEYRING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, VaultError> + Send + 'static,
) -> Result<T, VaultError> {
    match tokio::time::timeout(KEYRING_TIMEOUT, tokio::task::spawn_blocking(f)).await {
        Ok(Ok(result)) => result,
        Ok(Err(e)) => Err(VaultError(format!("keyring call failed: {e}"))),
        Err(_) => Err(VaultError("the keyring did not answer".into())),
    }
}

/// The OS keyring. The platform store is opened on first use, so an app
/// without a keyring (no Secret Service on the bus) starts and signs in, and
/// only persistence is lost.
pub struct SystemKeyring {
    service: String,
    store: OnceLock<Result<Arc<CredentialStore>, VaultError>>,
}

impl SystemKeyring {
    fn entry(&self, key: &str) -> Result<Entry, VaultError> {
        let store = self.store.get_or_init(open_platform_store).clone()?;
        Entry::new_in_store(&store, &self.service, key).map_err(map_error)
    }
}

impl SecretStore for SystemKeyring {
    fn load(&self, key: &str) -> Result<Option<String>, VaultError> {
        match self.entry(key)?.get_password() {
            Ok(secret) => Ok(Some(secret)),
            Err(keyring_core::Error::NoEntry) => Ok(None),
            Err(err) => Err(map_error(err)),
        }
    }

    fn save(&self, key: &str, secret: &str) -> Result<(), VaultError> {
        self.entry(key)?.set_password(secret).map_err(map_error)
    }

    fn delete(&self, key: &str) -> Result<(), VaultError> {
        match self.entry(key)?.delete_credential() {
            Ok(()) | Err(keyring_core::Error::NoEntry) => Ok(()),
            Err(err) => Err(map_error(err)),
        }
    }
}

#[cfg(all(
    unix,
    not(any(target_os = "macos", target_os = "ios", target_os = "android"))
))]
fn open_platform_store() -> Result<Arc<CredentialStore>, VaultError> {
    let store: Arc<CredentialStore> =
        zbus_secret_service_keyring_store::Store::new().map_err(map_error)?;
    Ok(store)
}

#[cfg(target_os = "macos")]
fn open_platform_store() -> Result<Arc<CredentialStore>, VaultError> {
    let store: Arc<CredentialStore> =
        apple_native_keyring_store::keychain::Store::new().map_err(map_error)?;
    Ok(store)
}

#[cfg(windows)]
fn open_platform_store() -> Result<Arc<CredentialStore>, VaultError> {
    let store: Arc<CredentialStore> =
        windows_native_keyring_store::Store::new().map_err(map_error)?;
    Ok(store)
}

/// One message whatever the platform said ("no result found", "prompt
/// dismissed", "ServiceUnknown", a locked collection...).
fn map_error(err: keyring_core::Error) -> VaultError {
    use keyring_core::Error as E;
    let detail = match &err {
        E::NoStorageAccess(inner) => format!("access refused ({inner})"),
        E::PlatformFailure(inner) => format!("{inner}"),
        other => other.to_string(),
    };
    VaultError(detail)
}

/// Secrets in memory only: for tests, and for a run whose keyring is broken.
#[derive(Default, Clone)]
pub struct MemoryStore(Arc<Mutex<HashMap<String, String>>>);

impl MemoryStore {
    pub fn snapshot(&self) -> HashMap<String, String> {
        self.0.lock().map(|m| m.clone()).unwrap_or_default()
    }

    pub fn replace(&self, contents: HashMap<String, String>) {
        if let Ok(mut map) = self.0.lock() {
            *map = contents;
        }
    }
}

impl SecretStore for MemoryStore {
    fn load(&self, key: &str) -> Result<Option<String>, VaultError> {
        Ok(self.snapshot().get(key).cloned())
    }

    fn save(&self, key: &str, secret: &str) -> Result<(), VaultError> {
        let mut map = self
            .0
            .lock()
            .map_err(|_| VaultError("memory store poisoned".into()))?;
        map.insert(key.to_owned(), secret.to_owned());
        Ok(())
    }

    fn delete(&self, key: &str) -> Result<(), VaultError> {
        let mut map = self
            .0
            .lock()
            .map_err(|_| VaultError("memory store poisoned".into()))?;
        map.remove(key);
        Ok(())
    }
}

/// A keyring that refuses everything, as a desktop without a Secret Service
/// does.
pub struct UnavailableStore;

impl SecretStore for UnavailableStore {
    fn load(&self, _: &str) -> Result<Option<String>, VaultError> {
        Err(VaultError("no Secret Service on the session bus".into()))
    }
    fn save(&self, _: &str, _: &str) -> Result<(), VaultError> {
        Err(VaultError("no Secret Service on the session bus".into()))
    }
    fn delete(&self, _: &str) -> Result<(), VaultError> {
        Err(VaultError("no Secret Service on the session bus".into()))
    }
}
