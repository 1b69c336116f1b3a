//! Where the supervisor's RSA key lives between runs: a data directory, so a restarted
//! supervisor has the same key and fingerprint (peers that pin it accept it, and re-announce
//! themselves to it). The directory is created private (0700) and the key file is written
//! private (0600) before any byte of the key goes into it.

use anyhow::Context;
use ownstream_core::auth::Identity;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The key file's name inside the data directory.
pub const KEY_FILE: &str = "supervisor-key.pem";

/// The default data directory: `$OWNSTREAM_DATA_DIR`, else `$XDG_STATE_HOME/ownstream`, else
/// `~/.local/state/ownstream`, else `.ownstream` in the working directory.
pub fn default_data_dir() -> PathBuf {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(dir) = env("OWNSTREAM_DATA_DIR") {
        return dir;
    }
    if let Some(state) = env("XDG_STATE_HOME") {
        return state.join("ownstream");
    }
    match env("HOME") {
        Some(home) => home.join(".local/state/ownstream"),
        None => PathBuf::from(".ownstream"),
    }
}

/// Reads the key kept in `dir`, or generates one of `bits` and keeps it there. Two supervisors
/// starting at once on one directory end up with the same key: the file appears atomically (a
/// hard link of a complete temporary file), and the one that loses the race reads the winner's.
pub fn load_or_create(dir: &Path, bits: usize) -> anyhow::Result<Identity> {
    create_private_dir(dir)?;
    let path = dir.join(KEY_FILE);
    if let Some(identity) = read(&path)? {
        return Ok(identity);
    }
    let identity =
        Identity::generate(&mut rand::rng(), bits).context("cannot generate the supervisor key")?;
    let pem = identity
        .to_pkcs8_pem()
        .context("cannot encode the supervisor key")?;
    if keep_once(dir, KEY_FILE, pem.as_bytes())? {
        Ok(identity)
    } else {
        read(&path)?.with_context(|| format!("{} vanished while starting", path.display()))
    }
}

/// The made-up publish token's file inside the data directory.
pub const PUBLISH_TOKEN_FILE: &str = "publish-token";

/// Reads the publish token kept in `dir`, or keeps `fresh` there. A supervisor that made its own
/// token keeps it across restarts like its key: a broadcaster that re-announces its stream to the
/// restarted supervisor presents the token it was given, and must not be refused.
pub fn load_or_create_token(dir: &Path, fresh: &str) -> anyhow::Result<String> {
    create_private_dir(dir)?;
    let path = dir.join(PUBLISH_TOKEN_FILE);
    let read = || -> anyhow::Result<Option<String>> {
        match fs::read_to_string(&path) {
            Ok(t) if !t.trim().is_empty() => Ok(Some(t.trim().to_string())),
            Ok(_) => anyhow::bail!("{} is empty", path.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    };
    if let Some(token) = read()? {
        return Ok(token);
    }
    if keep_once(dir, PUBLISH_TOKEN_FILE, fresh.as_bytes())? {
        Ok(fresh.to_string())
    } else {
        read()?.with_context(|| format!("{} vanished while starting", path.display()))
    }
}

/// Writes `name` in `dir` with `bytes`, privately and atomically (a hard link of a complete
/// temporary file); false when the file already exists (another supervisor won the race).
fn keep_once(dir: &Path, name: &str, bytes: &[u8]) -> anyhow::Result<bool> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.{}.tmp", std::process::id()));
    write_private(&tmp, bytes)?;
    let linked = fs::hard_link(&tmp, &path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e).with_context(|| format!("cannot write {}", path.display())),
    }
}

fn read(path: &Path) -> anyhow::Result<Option<Identity>> {
    match fs::read_to_string(path) {
        Ok(pem) => Identity::from_pkcs8_pem(&pem)
            .with_context(|| format!("{} is not a PKCS#8 PEM RSA private key", path.display()))
            .map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read key file {}", path.display())),
    }
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .with_context(|| format!("cannot create the data directory {}", dir.display()))
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_kept_private_and_found_again() {
        let dir = std::env::temp_dir().join(format!("ownstream-keystore-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let data = dir.join("nested/data");
        let first = load_or_create(&data, 1024).unwrap();
        let again = load_or_create(&data, 1024).unwrap();
        assert_eq!(first.fingerprint(), again.fingerprint());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&data), 0o700);
            assert_eq!(mode(&data.join(KEY_FILE)), 0o600);
        }
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_made_up_publish_token_is_kept_private_and_found_again() {
        let dir = std::env::temp_dir().join(format!("ownstream-tokenstore-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let first = load_or_create_token(&dir, "first-token-0123456789").unwrap();
        let again = load_or_create_token(&dir, "second-token-0123456789").unwrap();
        assert_eq!(first, "first-token-0123456789");
        assert_eq!(again, first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.join(PUBLISH_TOKEN_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let _ = fs::remove_dir_all(&dir);
    }
}
