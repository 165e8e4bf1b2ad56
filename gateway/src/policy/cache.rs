//! On-disk cache of compiled policies, so a warm start compiles nothing.
//!
//! An entry is named by the sha256 of the component's bytes and a sha256 of
//! the engine's compatibility hash (which covers the wasmtime version, the
//! engine configuration and the host CPU features): a new module, a new
//! wasmtime or a changed configuration each miss and recompile.
//!
//! Loading an entry runs native code that wasmtime trusts to be its own
//! output, so an entry must prove where it came from before it is loaded:
//!
//! - the directory is created private (0700) and refused if anyone else
//!   could write to it, or to any directory above it (a sticky directory
//!   such as `/tmp` is fine: others cannot rename what is ours in it);
//! - each entry carries an HMAC-SHA256, under a key kept in the directory
//!   (`key`, 0600), of the engine key, the sha256 of the module it was
//!   compiled from, and the compiled bytes. An entry copied from another
//!   module, or written by anything but this cache, does not verify;
//! - entries and the key are opened without following links and must be
//!   regular files of this user that no one else can read or write.
//!
//! An entry that fails any check is discarded, logged and recompiled; it is
//! never run. The built-in policies go through the same checks, bound to
//! the digest of the component embedded in the binary.

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// What an entry starts with, before its MAC and the compiled bytes.
const MAGIC: &[u8; 8] = b"PCLSCWC1";
const MAC_LEN: usize = 32;
/// Where an entry's compiled bytes begin.
const ENTRY_HEADER: usize = MAGIC.len() + MAC_LEN;
const KEY_LEN: usize = 32;

/// A compiled-module cache in one directory.
#[derive(Debug)]
pub(crate) struct CompileCache {
    dir: PathBuf,
    engine_key: String,
    key: [u8; KEY_LEN],
}

/// Why the cache directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The directory cannot be created or inspected.
    #[error("cannot use compilation cache directory {path}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// Someone other than this user could plant compiled code in it.
    #[error(
        "compilation cache directory {path} is writable by other users or owned by another user; \
         compiled code loaded from it would not be trustworthy (chmod 700 it, or choose another)"
    )]
    Untrusted {
        /// The directory.
        path: PathBuf,
    },
    /// A directory above the cache could be changed by someone else, who
    /// could then swap the cache for one of their own.
    #[error(
        "compilation cache directory {path} lies under {parent}, which other users can write to \
         (and which is not sticky); compiled code loaded from it would not be trustworthy"
    )]
    UntrustedParent {
        /// The cache directory.
        path: PathBuf,
        /// The directory above it.
        parent: PathBuf,
    },
    /// The cache's key file is not a private file of this user.
    #[error("compilation cache key {path} is not a private regular file of this user ({reason})")]
    Key {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

impl CompileCache {
    /// Opens (creating if needed) the cache in `dir` for `engine`.
    pub(crate) fn open(dir: &Path, engine: &Engine) -> Result<Self, CacheError> {
        let io = |source| CacheError::Io {
            path: dir.to_path_buf(),
            source,
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io)?;
        let dir = fs::canonicalize(dir).map_err(io)?;
        let metadata = fs::metadata(&dir).map_err(io)?;
        let me = rustix::process::geteuid().as_raw();
        let foreign_owner = metadata.uid() != me;
        let writable_by_others = metadata.permissions().mode() & 0o022 != 0;
        if foreign_owner || writable_by_others {
            return Err(CacheError::Untrusted { path: dir });
        }
        for parent in dir.ancestors().skip(1) {
            let metadata = fs::metadata(parent).map_err(io)?;
            let mode = metadata.permissions().mode();
            let trusted_owner = metadata.uid() == me || metadata.uid() == 0;
            let sticky = mode & 0o1000 != 0;
            if !trusted_owner || (mode & 0o022 != 0 && !sticky) {
                return Err(CacheError::UntrustedParent {
                    path: dir.clone(),
                    parent: parent.to_path_buf(),
                });
            }
        }
        let key = read_or_create_key(&dir.join("key"))?;

        let mut hasher = Sha256Hasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_key = crate::hex(&hasher.0.finalize()[..16]);
        Ok(Self {
            dir,
            engine_key,
            key,
        })
    }

    /// Returns the compiled component for the module `digest`, from the
    /// cache when present, with `compile` and stored otherwise. A damaged,
    /// unreadable or unproven entry is recompiled, never fatal.
    pub(crate) fn load<E>(
        &self,
        engine: &Engine,
        digest: &str,
        compile: impl FnOnce() -> Result<Component, E>,
    ) -> Result<Component, E> {
        let path = self.dir.join(format!("{digest}-{}.cwasm", self.engine_key));
        match self.read_entry(&path, digest) {
            Ok(None) => {}
            Ok(Some(entry)) => {
                let compiled = &entry[ENTRY_HEADER..];
                // SAFETY: `Component::deserialize` requires bytes produced by
                // `Component::serialize` of a compatible engine. These bytes
                // carry a MAC, under a key only this user can read, over the
                // engine key, this module's digest and the bytes themselves,
                // so they are what `store` below wrote for this very module
                // and engine, in a directory only this user can change
                // (checked in `open`); wasmtime additionally checks the
                // version and configuration recorded in the artifact.
                #[allow(unsafe_code, reason = "see the SAFETY comment")]
                match unsafe { Component::deserialize(engine, compiled) } {
                    Ok(component) => {
                        tracing::debug!(digest, "loaded the compiled policy from the cache");
                        return Ok(component);
                    }
                    Err(error) => {
                        tracing::warn!(path = %path.display(), "ignoring unusable cache entry: {error:#}")
                    }
                }
            }
            Err(reason) => {
                tracing::warn!(
                    path = %path.display(),
                    "discarding a cache entry that does not prove its origin ({reason}); it is recompiled, not run"
                );
                let _ = fs::remove_file(&path);
            }
        }
        let component = compile()?;
        tracing::debug!(digest, "compiled the policy");
        if let Err(error) = self.store(&path, digest, &component) {
            tracing::warn!(path = %path.display(), "cannot write compilation cache entry: {error:#}");
        }
        Ok(component)
    }

    /// The entry at `path` for the module `digest`, header included (its
    /// compiled bytes start at [`ENTRY_HEADER`]): `None` when there is no
    /// entry, an error when there is one that does not prove its origin.
    fn read_entry(&self, path: &Path, digest: &str) -> Result<Option<Vec<u8>>, String> {
        let file = match fs::OpenOptions::new()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(path)
        {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(format!("cannot open it: {error}")),
        };
        private_file(&file)?;
        let mut bytes = Vec::new();
        (&file)
            .read_to_end(&mut bytes)
            .map_err(|error| format!("cannot read it: {error}"))?;
        let Some(rest) = bytes.strip_prefix(MAGIC.as_slice()) else {
            return Err("it is not an entry of this cache".into());
        };
        if rest.len() < MAC_LEN {
            return Err("it is truncated".into());
        }
        let (mac, compiled) = rest.split_at(MAC_LEN);
        self.mac(digest, compiled)
            .verify_slice(mac)
            .map_err(|_| "its MAC does not match this module and engine".to_owned())?;
        Ok(Some(bytes))
    }

    fn mac(&self, digest: &str, compiled: &[u8]) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        for part in [self.engine_key.as_bytes(), digest.as_bytes()] {
            mac.update(&(part.len() as u64).to_le_bytes());
            mac.update(part);
        }
        mac.update(compiled);
        mac
    }

    /// Writes an entry atomically (temporary file, then rename), so a reader
    /// never sees half of one.
    fn store(&self, path: &Path, digest: &str, component: &Component) -> wasmtime::Result<()> {
        let compiled = component.serialize()?;
        let mac = self.mac(digest, &compiled).finalize().into_bytes();
        // Created 0600.
        let mut temporary = tempfile::NamedTempFile::new_in(&self.dir)?;
        temporary.write_all(MAGIC)?;
        temporary.write_all(&mac)?;
        temporary.write_all(&compiled)?;
        temporary.as_file().sync_all()?;
        temporary.persist(path)?;
        Ok(())
    }
}

/// Checks that an open file is a regular file of this user that no one
/// else can read or write.
fn private_file(file: &fs::File) -> Result<(), String> {
    let metadata = file
        .metadata()
        .map_err(|error| format!("cannot inspect it: {error}"))?;
    if !metadata.is_file() {
        return Err("it is not a regular file".into());
    }
    if metadata.uid() != rustix::process::geteuid().as_raw() {
        return Err("it belongs to another user".into());
    }
    if metadata.permissions().mode() & 0o077 != 0 {
        return Err(format!(
            "others may read or write it (mode {:o})",
            metadata.permissions().mode() & 0o777
        ));
    }
    Ok(())
}

/// The cache's MAC key: read, or made from the system's randomness on
/// first use.
fn read_or_create_key(path: &Path) -> Result<[u8; KEY_LEN], CacheError> {
    let key_error = |reason: String| CacheError::Key {
        path: path.to_path_buf(),
        reason,
    };
    let mut key = [0u8; KEY_LEN];
    match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(mut file) => {
            fs::File::open("/dev/urandom")
                .and_then(|mut random| random.read_exact(&mut key))
                .and_then(|()| file.write_all(&key))
                .and_then(|()| file.sync_all())
                .map_err(|error| key_error(format!("cannot create it: {error}")))?;
            return Ok(key);
        }
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(error) => return Err(key_error(format!("cannot create it: {error}"))),
    }
    let mut file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
        .map_err(|error| key_error(format!("cannot open it: {error}")))?;
    private_file(&file).map_err(key_error)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|error| key_error(format!("cannot read it: {error}")))?;
    if bytes.len() != KEY_LEN {
        return Err(key_error(format!(
            "it holds {} bytes, not {KEY_LEN}",
            bytes.len()
        )));
    }
    key.copy_from_slice(&bytes);
    Ok(key)
}

/// Feeds `Hash` output into sha256, so the key is stable across Rust releases
/// (`DefaultHasher` is not).
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        // Never called by `Hash::hash`; only the sha256 digest is read.
        0
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}
