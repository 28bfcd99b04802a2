//! `tinyrank demo`: serves the client-side search page (www/), the npm package (web/), a model
//! checkpoint and a dataset directory on 127.0.0.1. Everything runs in the browser; this server
//! only hands out files.

use std::fs::File;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;

#[derive(Args)]
pub struct DemoArgs {
    /// Cross-encoder checkpoint directory the page loads (a distilled student).
    #[arg(long)]
    model: PathBuf,
    /// Dataset directory: collection.tsv (the corpus searched), and optionally queries.tsv
    /// (offered as examples) and qrels.txt (nDCG@10 of both lists).
    #[arg(long)]
    data: PathBuf,
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// The repository checkout holding www/ and the built web/ package.
    #[arg(long, default_value = env!("CARGO_MANIFEST_DIR"))]
    root: PathBuf,
}

/// URL prefix -> directory, and the files a directory may serve (None: any file below it).
struct Mount {
    prefix: &'static str,
    dir: PathBuf,
    only: Option<&'static [&'static str]>,
}

const MODEL_FILES: &[&str] = &[
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "vocab.txt",
    "tokenizer_config.json",
];
const DATA_FILES: &[&str] = &["collection.tsv", "queries.tsv", "qrels.txt"];

pub fn run_demo(args: DemoArgs) -> Result<()> {
    check_inputs(&args)?;
    let mounts = mounts(&args);
    let server = tiny_http::Server::http(("127.0.0.1", args.port))
        .map_err(|e| anyhow::anyhow!("cannot listen on 127.0.0.1:{}: {e}", args.port))?;
    let address = server
        .server_addr()
        .to_ip()
        .context("the server has no IP address")?;
    // Tests and scripts read this line to find the port.
    println!(
        "serving the demo on http://{address}/ (model {}, data {}); Ctrl-C stops",
        args.model.display(),
        args.data.display()
    );
    for request in server.incoming_requests() {
        let response = match resolve(&mounts, request.url()) {
            Some(path) => file_response(&path),
            None => not_found(),
        };
        // A client that went away is not the server's problem.
        let _ = request.respond(response);
    }
    Ok(())
}

/// Fails, naming the folder and what to do, when the package, page, model or data is missing.
fn check_inputs(args: &DemoArgs) -> Result<()> {
    let web = args.root.join("web");
    let www = args.root.join("www");
    if !web.join("pkg/tinyrank_wasm_bg.wasm").is_file() {
        bail!(
            "{} has no built package: run scripts/build-web.sh first (or point --root at a \
             checkout where it ran)",
            web.display()
        );
    }
    if !www.join("index.html").is_file() {
        bail!(
            "{} has no index.html: point --root at the tinyrank checkout",
            www.display()
        );
    }
    if !args.model.join("config.json").is_file() {
        bail!(
            "{}: no config.json: --model must be a checkpoint directory",
            args.model.display()
        );
    }
    if !args.data.join("collection.tsv").is_file() {
        bail!(
            "{}: no collection.tsv: --data must be a dataset directory",
            args.data.display()
        );
    }
    Ok(())
}

/// What the server serves: the npm package, the model's and the data's files, the page.
fn mounts(args: &DemoArgs) -> [Mount; 4] {
    [
        Mount {
            prefix: "/tinyrank/",
            dir: args.root.join("web"),
            only: None,
        },
        Mount {
            prefix: "/model/",
            dir: args.model.clone(),
            only: Some(MODEL_FILES),
        },
        Mount {
            prefix: "/data/",
            dir: args.data.clone(),
            only: Some(DATA_FILES),
        },
        Mount {
            prefix: "/",
            dir: args.root.join("www"),
            only: None,
        },
    ]
}

fn file_response(path: &Path) -> tiny_http::ResponseBox {
    let Ok(file) = File::open(path) else {
        return not_found();
    };
    let mut response = tiny_http::Response::from_file(file).boxed();
    for (name, value) in headers(path) {
        response.add_header(tiny_http::Header::from_bytes(name, value).expect("a valid header"));
    }
    response
}

fn not_found() -> tiny_http::ResponseBox {
    tiny_http::Response::from_string("not found")
        .with_status_code(404)
        .boxed()
}

/// The file a URL names, if a mount serves it: no `..`, no hidden files, only listed names.
fn resolve(mounts: &[Mount], url: &str) -> Option<PathBuf> {
    let path = url.split(['?', '#']).next().unwrap_or("/");
    let mount = mounts.iter().find(|m| path.starts_with(m.prefix))?;
    let mut rest = path[mount.prefix.len()..].to_string();
    if rest.is_empty() || rest.ends_with('/') {
        rest.push_str("index.html");
    }
    let relative = Path::new(&rest);
    let safe = relative
        .components()
        .all(|c| matches!(c, Component::Normal(s) if !s.to_string_lossy().starts_with('.')));
    if !safe {
        return None;
    }
    if let Some(only) = mount.only
        && !only.contains(&rest.as_str())
    {
        return None;
    }
    let file = mount.dir.join(relative);
    file.is_file().then_some(file)
}

/// A file's response headers: its type; an ETag from its size and modification time, which the
/// package compares with what it keeps in Cache Storage; and cross-origin isolation (COOP +
/// COEP), which gives the page SharedArrayBuffer and precise timers, as multithreaded
/// WebAssembly engines such as onnxruntime-web require.
fn headers(path: &Path) -> Vec<(&'static str, String)> {
    let mut headers = vec![
        ("Content-Type", content_type(path).to_string()),
        ("Cross-Origin-Opener-Policy", "same-origin".to_string()),
        ("Cross-Origin-Embedder-Policy", "require-corp".to_string()),
    ];
    if let Ok(meta) = std::fs::metadata(path) {
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        headers.push(("ETag", format!("\"{:x}-{modified:x}\"", meta.len())));
    }
    headers
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") | Some("mjs") => "text/javascript",
        Some("css") => "text/css",
        Some("json") => "application/json",
        Some("wasm") => "application/wasm",
        Some("tsv") | Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listed_files_below_a_mount_are_served() {
        let dir = tempfile::tempdir().unwrap();
        let (www, model) = (dir.path().join("www"), dir.path().join("model"));
        for d in [&www, &model] {
            std::fs::create_dir_all(d).unwrap();
        }
        for f in [
            www.join("index.html"),
            www.join(".secret"),
            model.join("config.json"),
            model.join("notes.txt"),
            dir.path().join("outside.txt"),
        ] {
            std::fs::write(f, "x").unwrap();
        }
        let mounts = [
            Mount {
                prefix: "/model/",
                dir: model.clone(),
                only: Some(MODEL_FILES),
            },
            Mount {
                prefix: "/",
                dir: www.clone(),
                only: None,
            },
        ];
        assert_eq!(resolve(&mounts, "/"), Some(www.join("index.html")));
        assert_eq!(
            resolve(&mounts, "/index.html?x=1"),
            Some(www.join("index.html"))
        );
        assert_eq!(
            resolve(&mounts, "/model/config.json"),
            Some(model.join("config.json"))
        );
        for refused in [
            "/model/notes.txt",
            "/../outside.txt",
            "/model/../outside.txt",
            "/.secret",
            "/missing.js",
        ] {
            assert_eq!(resolve(&mounts, refused), None, "{refused}");
        }
    }
}
