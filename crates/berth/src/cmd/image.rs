//! `berth image`: build and manage OCI images without Docker.
//!
//! Images live in a local store, an OCI image layout directory (`--store`,
//! `BERTH_IMAGE_STORE`, default `$BERTH_DATA_DIR/images`), where each image
//! is named `NAME:TAG`. Builds are reproducible: the same inputs give the
//! same digest (see `berth_oci::build`).
//!
//! ```text
//! berth image build -t web:v1 --from-dir ./rootfs --entrypoint /bin/httpd --expose 8080
//! berth image ls
//! berth image inspect web:v1
//! berth image export web:v1 ./out        # then: skopeo copy oci:./out:web:v1 docker://...
//! berth image import ./alpine-layout:alpine -t alpine:3
//! berth image rm web:v1 && berth image prune
//! ```

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use berth_oci::build::{build_image, ImageSpec, LayerSource};
use berth_oci::layout::{host_architecture, LayoutError, LocalImage, OciLayout};
use berth_oci::reference::{validate_repository, validate_tag, DEFAULT_TAG};
use berth_oci::{Digest, Reference};
use clap::{Args, Subcommand};

/// The default data directory, when `BERTH_DATA_DIR` is not set.
const DEFAULT_DATA_DIR: &str = "/var/lib/berth";

/// `berth image` and its flags.
#[derive(Args, Debug)]
pub struct ImageArgs {
    /// The local image store, an OCI image layout directory
    /// [default: $BERTH_DATA_DIR/images, i.e. /var/lib/berth/images]
    #[arg(long, env = "BERTH_IMAGE_STORE", global = true)]
    pub store: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: ImageCommand,
}

/// The `berth image` subcommands.
#[derive(Subcommand, Debug)]
pub enum ImageCommand {
    /// Build an image from a directory, files or a tar archive, optionally on
    /// top of a base image; prints the manifest digest.
    Build(Box<BuildArgs>),
    /// List the images in the store.
    #[command(alias = "list")]
    Ls,
    /// Print an image's manifest digest, manifest and config as JSON.
    Inspect {
        /// NAME[:TAG] or a manifest digest.
        image: String,
    },
    /// Remove image names from the store (their blobs stay until `prune`).
    #[command(alias = "remove")]
    Rm {
        /// NAME[:TAG] ...
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Delete blobs that no image in the store uses any more.
    Prune,
    /// Copy an image into another OCI image layout directory (for skopeo,
    /// podman, umoci, ...).
    Export {
        /// NAME[:TAG] or a manifest digest.
        image: String,
        /// The destination layout directory (created if missing).
        dir: PathBuf,
        /// The name it gets there (default: NAME:TAG, so `oci:DIR:NAME:TAG`).
        #[arg(long = "ref")]
        ref_name: Option<String>,
    },
    /// Copy an image from an OCI image layout directory into the store.
    Import {
        /// DIR[:REF]: the layout and the name of the image in it (may be
        /// omitted when the layout holds one image).
        source: String,
        /// The name in the store (default: REF).
        #[arg(short = 't', long = "tag", value_name = "NAME[:TAG]")]
        tag: Option<String>,
    },
    /// Push an image to a registry.
    Push(PushArgs),
}

/// `berth image build` flags.
#[derive(Args, Debug)]
pub struct BuildArgs {
    /// The image's name in the store.
    #[arg(short = 't', long = "tag", value_name = "NAME[:TAG]")]
    pub tag: String,
    /// A directory whose contents become the image root.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["file", "from_tar"])]
    pub from_dir: Option<PathBuf>,
    /// A host file or directory and where it goes in the image (default:
    /// /BASENAME). Repeatable; all go into one layer.
    #[arg(long, value_name = "SRC[:DEST]", conflicts_with = "from_tar")]
    pub file: Vec<String>,
    /// A tar archive (plain or gzipped) to repackage as the layer.
    #[arg(long, value_name = "FILE")]
    pub from_tar: Option<PathBuf>,
    /// An image in the store to build on top of.
    #[arg(long, value_name = "NAME[:TAG]")]
    pub base: Option<String>,
    /// ENTRYPOINT: a JSON array (`'["/bin/sh","-c"]'`) or words (`/bin/httpd`).
    #[arg(long, value_name = "JSON|WORDS", allow_hyphen_values = true)]
    pub entrypoint: Option<String>,
    /// CMD: a JSON array or words.
    #[arg(long, value_name = "JSON|WORDS", allow_hyphen_values = true)]
    pub cmd: Option<String>,
    /// An environment variable; repeatable; merged into the base image's by name.
    #[arg(long, value_name = "K=V")]
    pub env: Vec<String>,
    /// The working directory (absolute).
    #[arg(long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// A port the image listens on; repeatable.
    #[arg(long, value_name = "PORT[/tcp|udp]")]
    pub expose: Vec<String>,
    /// The user to run as (`user`, `uid`, `uid:gid`).
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// A label; repeatable.
    #[arg(long, value_name = "K=V")]
    pub label: Vec<String>,
    /// The CPU architecture (default: the base image's, or this machine's).
    #[arg(long, value_name = "ARCH")]
    pub arch: Option<String>,
}

/// `berth image push` flags.
#[derive(Args, Debug)]
pub struct PushArgs {
    /// NAME[:TAG] in the store.
    pub image: String,
    /// Where to push: REGISTRY/REPO[:TAG].
    pub destination: String,
    /// Allow plain HTTP and unverified TLS.
    #[arg(long)]
    pub insecure: bool,
    /// The registry user name.
    #[arg(long, requires = "password_stdin")]
    pub username: Option<String>,
    /// Read the registry password from standard input.
    #[arg(long, requires = "username")]
    pub password_stdin: bool,
}

/// Runs a `berth image` subcommand.
pub fn run(args: ImageArgs) -> anyhow::Result<()> {
    let store = match args.store {
        Some(s) => s,
        None => default_store(),
    };
    match args.command {
        ImageCommand::Build(b) => build(&store, &b),
        ImageCommand::Ls => ls(&store),
        ImageCommand::Inspect { image } => inspect(&store, &image),
        ImageCommand::Rm { images } => rm(&store, &images),
        ImageCommand::Prune => prune(&store),
        ImageCommand::Export {
            image,
            dir,
            ref_name,
        } => export(&store, &image, &dir, ref_name.as_deref()),
        ImageCommand::Import { source, tag } => import(&store, &source, tag.as_deref()),
        ImageCommand::Push(p) => push(&store, &p),
    }
}

/// `$BERTH_DATA_DIR/images`, or `/var/lib/berth/images`.
fn default_store() -> PathBuf {
    std::env::var_os("BERTH_DATA_DIR")
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from(DEFAULT_DATA_DIR), PathBuf::from)
        .join("images")
}

fn open_store(store: &Path) -> anyhow::Result<OciLayout> {
    if !store.exists() {
        bail!(
            "there is no image store at {} yet; build one with `berth image build` or point --store (BERTH_IMAGE_STORE) at another",
            store.display()
        );
    }
    OciLayout::open(store).with_context(|| format!("opening the image store {}", store.display()))
}

fn create_store(store: &Path) -> anyhow::Result<OciLayout> {
    OciLayout::create_or_open(store)
        .with_context(|| format!("opening the image store {}", store.display()))
}

/// Turns `NAME`, `NAME:TAG`, `NAME@DIGEST` or `DIGEST` into the key the
/// store uses: `NAME:TAG` or a digest.
fn store_key(s: &str) -> anyhow::Result<String> {
    if s.parse::<Digest>().is_ok() {
        return Ok(s.to_string());
    }
    let (name, digest) = match s.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (s, None),
    };
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    let (repo, tag) = match name[last_slash..].rfind(':') {
        Some(i) => (&name[..last_slash + i], &name[last_slash + i + 1..]),
        None => (name, DEFAULT_TAG),
    };
    let invalid = |why: String| anyhow::anyhow!("image name {s:?} is not valid: {why}");
    // A leading registry host (`localhost:5000/app`) is part of the name.
    let path = match repo.split_once('/') {
        Some((host, rest)) if host.contains('.') || host.contains(':') || host == "localhost" => {
            if !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:".contains(&b))
            {
                return Err(invalid(format!("registry host {host:?} is not valid")));
            }
            rest
        }
        _ => repo,
    };
    validate_repository(path).map_err(invalid)?;
    validate_tag(tag).map_err(invalid)?;
    if let Some(d) = digest {
        d.parse::<Digest>().map_err(|e| invalid(e.to_string()))?;
        return Ok(d.to_string());
    }
    Ok(format!("{repo}:{tag}"))
}

/// `'["a","b"]'` as JSON, otherwise whitespace-separated words.
fn parse_command(flag: &str, s: &str) -> anyhow::Result<Vec<String>> {
    let t = s.trim();
    if t.starts_with('[') {
        serde_json::from_str(t).with_context(|| {
            format!("{flag} {s:?} is not a JSON array of strings; use e.g. '[\"/bin/sh\",\"-c\"]' or plain words")
        })
    } else {
        Ok(t.split_whitespace().map(str::to_string).collect())
    }
}

/// `SRC:DEST` (DEST absolute) or `SRC` (DEST is `/BASENAME`).
fn parse_file(s: &str) -> anyhow::Result<(PathBuf, String)> {
    if let Some((src, dest)) = s.rsplit_once(':') {
        if dest.starts_with('/') && !src.is_empty() {
            return Ok((PathBuf::from(src), dest.to_string()));
        }
    }
    let src = PathBuf::from(s);
    let base = src
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| {
            format!("--file {s}: give the destination in the image, e.g. --file {s}:/srv")
        })?
        .to_string();
    Ok((src, format!("/{base}")))
}

fn parse_kv(flag: &str, s: &str) -> anyhow::Result<(String, String)> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => bail!("{flag} {s:?} is not valid: use KEY=VALUE"),
    }
}

fn build(store: &Path, b: &BuildArgs) -> anyhow::Result<()> {
    let tag = store_key(&b.tag)?;
    if tag.parse::<Digest>().is_ok() || b.tag.contains('@') {
        bail!(
            "-t {} must be NAME[:TAG], not a digest (the digest is computed)",
            b.tag
        );
    }
    let mut layers = Vec::new();
    if let Some(d) = &b.from_dir {
        layers.push(LayerSource::Dir(d.clone()));
    }
    if !b.file.is_empty() {
        let files = b
            .file
            .iter()
            .map(|f| parse_file(f))
            .collect::<anyhow::Result<Vec<_>>>()?;
        layers.push(LayerSource::Files(files));
    }
    if let Some(t) = &b.from_tar {
        layers.push(LayerSource::Tar(t.clone()));
    }
    let base = b.base.as_deref().map(store_key).transpose()?;
    if layers.is_empty() && base.is_none() {
        bail!("nothing to build: give --from-dir DIR, --file SRC[:DEST] or --from-tar FILE (or --base NAME:TAG to change only the config)");
    }
    for e in &b.env {
        parse_kv("--env", e)?;
    }
    let labels = b
        .label
        .iter()
        .map(|l| parse_kv("--label", l))
        .collect::<anyhow::Result<BTreeMap<_, _>>>()?;
    let spec = ImageSpec {
        entrypoint: b
            .entrypoint
            .as_deref()
            .map(|s| parse_command("--entrypoint", s))
            .transpose()?,
        cmd: b
            .cmd
            .as_deref()
            .map(|s| parse_command("--cmd", s))
            .transpose()?,
        env: b.env.clone(),
        working_dir: b.workdir.clone(),
        exposed_ports: b.expose.clone(),
        user: b.user.clone(),
        labels,
        // Empty: the base image's; without a base, this machine's / linux.
        architecture: b.arch.clone().unwrap_or_else(|| {
            if base.is_some() {
                String::new()
            } else {
                host_architecture().to_string()
            }
        }),
        os: String::new(),
    };
    let layout = create_store(store)?;
    let desc = build_image(&layout, base.as_deref(), &layers, &spec, &tag)
        .with_context(|| format!("building image {tag} in {}", store.display()))?;
    println!("{}", desc.digest);
    Ok(())
}

/// Writes to standard output; a closed pipe (`| head`) is not an error.
fn print_out(s: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(s.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("writing to standard output"),
    }
}

/// `1.9MB`, `512B`: decimal units, like `docker images`.
fn human_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut unit = 0;
    let mut whole = n;
    let mut rem = 0;
    while whole >= 1000 && unit < UNITS.len() - 1 {
        rem = whole % 1000;
        whole /= 1000;
        unit += 1;
    }
    if unit == 0 {
        format!("{n}B")
    } else {
        format!("{whole}.{}{}", rem / 100, UNITS[unit])
    }
}

fn ls(store: &Path) -> anyhow::Result<()> {
    let rows = if store.exists() {
        let layout = open_store(store)?;
        layout
            .list()
            .with_context(|| format!("listing the images in {}", store.display()))?
            .into_iter()
            .map(|(name, desc)| {
                let size = layout
                    .image(&name)
                    .map_or_else(|_| "?".to_string(), |i| human_size(i.size()));
                (name, desc.digest.hex()[..12].to_string(), size)
            })
            .collect::<Vec<_>>()
    } else {
        Vec::new()
    };
    let w = rows
        .iter()
        .map(|r| r.0.len())
        .max()
        .unwrap_or(0)
        .max("NAME:TAG".len());
    let mut table = format!("{:<w$}  {:<12}  SIZE\n", "NAME:TAG", "DIGEST");
    for (name, digest, size) in rows {
        table.push_str(&format!("{name:<w$}  {digest:<12}  {size}\n"));
    }
    print_out(&table)
}

fn find_image(layout: &OciLayout, store: &Path, image: &str) -> anyhow::Result<LocalImage> {
    let key = store_key(image)?;
    layout.image(&key).map_err(|e| match e {
        LayoutError::NotFound { .. } => anyhow::anyhow!(
            "no image {key} in the store {} (list them with `berth image ls`)",
            store.display()
        ),
        e => anyhow::Error::new(e).context(format!("reading image {key}")),
    })
}

fn inspect(store: &Path, image: &str) -> anyhow::Result<()> {
    let layout = open_store(store)?;
    let img = find_image(&layout, store, image)?;
    let raw_json = |d: &Digest| -> anyhow::Result<serde_json::Value> {
        let raw = layout.read_blob(d)?;
        serde_json::from_slice(&raw).with_context(|| format!("blob {d} is not JSON"))
    };
    let out = serde_json::json!({
        "name": store_key(image)?,
        "digest": img.manifest_desc.digest.to_string(),
        "mediaType": img.manifest_desc.media_type,
        "size": img.size(),
        "manifest": raw_json(&img.manifest_desc.digest)?,
        "config": raw_json(&img.manifest.config.digest)?,
    });
    print_out(&format!("{}\n", serde_json::to_string_pretty(&out)?))
}

fn rm(store: &Path, images: &[String]) -> anyhow::Result<()> {
    let layout = open_store(store)?;
    for image in images {
        let key = store_key(image)?;
        let removed = layout
            .untag(&key)
            .with_context(|| format!("removing {key} from {}", store.display()))?;
        if !removed {
            bail!(
                "no image {key} in the store {} (list them with `berth image ls`)",
                store.display()
            );
        }
        println!("removed {key}");
    }
    Ok(())
}

fn prune(store: &Path) -> anyhow::Result<()> {
    let layout = open_store(store)?;
    let (n, bytes) = layout
        .gc()
        .with_context(|| format!("pruning {}", store.display()))?;
    println!("deleted {n} unused blobs ({})", human_size(bytes));
    Ok(())
}

fn export(store: &Path, image: &str, dir: &Path, ref_name: Option<&str>) -> anyhow::Result<()> {
    let layout = open_store(store)?;
    let key = store_key(image)?;
    let img = find_image(&layout, store, image)?;
    let dest_ref = match ref_name {
        Some(r) => r.to_string(),
        None if key.parse::<Digest>().is_ok() => {
            bail!("exporting by digest needs --ref NAME for the destination")
        }
        None => key.clone(),
    };
    let non_empty = dir.read_dir().is_ok_and(|mut d| d.next().is_some());
    if non_empty && !dir.join("oci-layout").exists() {
        bail!(
            "{} exists and is not an OCI image layout; export into a new or empty directory",
            dir.display()
        );
    }
    let dest = OciLayout::create_or_open(dir)
        .with_context(|| format!("creating the OCI layout {}", dir.display()))?;
    layout
        .copy_image(&img.manifest_desc.digest.to_string(), &dest, &dest_ref)
        .with_context(|| format!("exporting {key} to {}", dir.display()))?;
    // The scratch directory is empty now; leave a plain layout behind.
    let _ = std::fs::remove_dir(dir.join(".tmp"));
    println!("{}", img.manifest_desc.digest);
    eprintln!(
        "exported {key} to {} as {dest_ref} (skopeo: oci:{}:{dest_ref})",
        dir.display(),
        dir.display()
    );
    Ok(())
}

fn import(store: &Path, source: &str, tag: Option<&str>) -> anyhow::Result<()> {
    let (dir, src_ref) = if Path::new(source).exists() {
        (PathBuf::from(source), None)
    } else {
        match source.split_once(':') {
            Some((d, r)) if !r.is_empty() => (PathBuf::from(d), Some(r.to_string())),
            _ => (PathBuf::from(source), None),
        }
    };
    let src = OciLayout::open(&dir)
        .with_context(|| format!("opening the OCI layout {}", dir.display()))?;
    let src_ref = match src_ref {
        Some(r) => r,
        None => {
            let names = src
                .list()
                .with_context(|| format!("listing {}", dir.display()))?;
            match names.as_slice() {
                [(n, _)] => n.clone(),
                [] => bail!("{} holds no named image", dir.display()),
                many => bail!(
                    "{} holds {} images; name one as {}:REF (one of: {})",
                    dir.display(),
                    many.len(),
                    dir.display(),
                    many.iter()
                        .map(|(n, _)| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }
        }
    };
    let key = store_key(tag.unwrap_or(&src_ref)).with_context(|| {
        format!("{src_ref:?} cannot name the image in the store; give -t NAME[:TAG]")
    })?;
    if key.parse::<Digest>().is_ok() {
        bail!("give -t NAME[:TAG] to name the imported image");
    }
    let layout = create_store(store)?;
    let desc = src
        .copy_image(&src_ref, &layout, &key)
        .with_context(|| format!("importing {src_ref} from {}", dir.display()))?;
    println!("{}", desc.digest);
    eprintln!("imported {src_ref} from {} as {key}", dir.display());
    Ok(())
}

/// Registry credentials for a push.
#[derive(Debug)]
struct Credentials {
    username: String,
    password: String,
}

fn push(store: &Path, p: &PushArgs) -> anyhow::Result<()> {
    let layout = open_store(store)?;
    let img = find_image(&layout, store, &p.image)?;
    let dest: Reference = p
        .destination
        .parse()
        .with_context(|| format!("push destination {}", p.destination))?;
    let creds = match &p.username {
        Some(u) if p.password_stdin => {
            let mut password = String::new();
            std::io::stdin()
                .read_to_string(&mut password)
                .context("reading the password from standard input")?;
            Some(Credentials {
                username: u.clone(),
                password: password.trim_end_matches(['\r', '\n']).to_string(),
            })
        }
        _ => None,
    };
    let digest = push_image(&layout, &img, &dest, p.insecure, creds.as_ref())?;
    println!("{digest}");
    Ok(())
}

/// Credentials for `registry` from the auth files `berth registry login`,
/// `skopeo login` and `docker login` write, if any.
fn stored_credentials(registry: &str) -> Option<berth_oci::Credentials> {
    use base64::Engine;
    for path in crate::cmd::registry::auth_files() {
        let Ok(raw) = std::fs::read(&path) else {
            continue;
        };
        let Ok(doc) = serde_json::from_slice::<serde_json::Value>(&raw) else {
            continue;
        };
        let Some(auth) = doc["auths"][registry]["auth"].as_str() else {
            continue;
        };
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(auth) else {
            continue;
        };
        let Ok(text) = String::from_utf8(decoded) else {
            continue;
        };
        if let Some((u, p)) = text.split_once(':') {
            return Some(berth_oci::Credentials::Basic {
                username: u.to_string(),
                password: p.to_string(),
            });
        }
    }
    None
}

/// Uploads the image's blobs (config, layers) and then its manifest to
/// `dest`; returns the manifest digest the registry reports. Credentials come
/// from `--username/--password-stdin`, else from the auth files that
/// `berth registry login` or `skopeo login` wrote.
fn push_image(
    layout: &OciLayout,
    img: &LocalImage,
    dest: &Reference,
    insecure: bool,
    creds: Option<&Credentials>,
) -> anyhow::Result<Digest> {
    use std::collections::HashMap;

    use berth_oci::{ClientConfig, RegistryClient};

    let mut credentials = HashMap::new();
    let chosen = match creds {
        Some(c) => Some(berth_oci::Credentials::Basic {
            username: c.username.clone(),
            password: c.password.clone(),
        }),
        None => stored_credentials(&dest.registry),
    };
    if let Some(c) = chosen {
        credentials.insert(dest.registry.clone(), c);
    }
    let client = RegistryClient::new(ClientConfig {
        credentials,
        insecure_registries: if insecure {
            vec![dest.registry.clone()]
        } else {
            Vec::new()
        },
        ..ClientConfig::default()
    })
    .with_context(|| format!("setting up a client for {}", dest.registry))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        for d in std::iter::once(&img.manifest.config).chain(img.manifest.layers.iter()) {
            client
                .push_blob(dest, &d.digest, &layout.blob_path(&d.digest), None)
                .await
                .with_context(|| format!("pushing blob {} to {dest}", d.digest))?;
        }
        let bytes = layout
            .read_blob(&img.manifest_desc.digest)
            .with_context(|| format!("reading manifest {}", img.manifest_desc.digest))?;
        client
            .put_manifest(dest, &img.manifest_desc.media_type, bytes)
            .await
            .with_context(|| format!("pushing the manifest to {dest}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_keys() {
        assert_eq!(store_key("web").unwrap(), "web:latest");
        assert_eq!(store_key("team/web:v1").unwrap(), "team/web:v1");
        assert_eq!(
            store_key("localhost:5000/web:v1").unwrap(),
            "localhost:5000/web:v1"
        );
        assert_eq!(
            store_key("localhost:5000/web").unwrap(),
            "localhost:5000/web:latest"
        );
        let d = Digest::of(b"x").to_string();
        assert_eq!(store_key(&d).unwrap(), d);
        assert_eq!(store_key(&format!("web@{d}")).unwrap(), d);
        assert!(store_key("Web").is_err());
        assert!(store_key("web:-x").is_err());
        assert!(store_key("web@sha256:zz").is_err());
    }

    #[test]
    fn commands_files_and_sizes() {
        assert_eq!(
            parse_command("--cmd", r#"["httpd","-f"]"#).unwrap(),
            vec!["httpd", "-f"]
        );
        assert_eq!(
            parse_command("--cmd", "/bin/httpd -f").unwrap(),
            vec!["/bin/httpd", "-f"]
        );
        assert!(parse_command("--cmd", "[1]").is_err());
        assert_eq!(
            parse_file("./app:/usr/bin/app").unwrap(),
            (PathBuf::from("./app"), "/usr/bin/app".to_string())
        );
        assert_eq!(
            parse_file("dir/site").unwrap(),
            (PathBuf::from("dir/site"), "/site".to_string())
        );
        assert!(parse_file(".").is_err());
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1_950_000), "1.9MB");
        assert!(parse_kv("--env", "NOEQ").is_err());
    }
}
