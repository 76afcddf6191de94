//! `sluice standalone`'s loader: one file of a manifest directory edited and read again as the
//! inotify events name it (`IncrementalLoader::reload_paths`), with the report of the whole
//! directory (warnings, errors, unloaded Gateways), at 20, 2,000 and 20,000 files (a root
//! IngressRoute and its Service per pair of files), same run. Work in proportion to the change
//! costs about the same at every size. `SLUICE_SCALE_ONLY=loader` runs this table alone.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use sluice::source::IncrementalLoader;

use super::ms;

fn route(i: usize, path: &str) -> String {
    format!(
        "apiVersion: contour.heptio.com/v1beta1\nkind: IngressRoute\nmetadata:\n  name: r{i}\n  namespace: team{}\nspec:\n  virtualhost:\n    fqdn: r{i}.example.com\n  routes:\n  - match: {path}\n    services:\n    - name: s{i}\n      port: 80\n",
        i % 50
    )
}

fn service(i: usize) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: s{i}\n  namespace: team{}\nspec:\n  ports:\n  - port: 80\n",
        i % 50
    )
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("writing a manifest");
}

pub fn table() {
    const EDITS: usize = 21;
    println!();
    println!(
        "{:>7} {:<34} {:>20}",
        "files", "one file edited, read again", "p50 / p90 (ms)"
    );
    for n in [10, 1_000, 10_000] {
        let dir = tempfile::tempdir().expect("a temporary directory");
        for i in 0..n {
            write(dir.path(), &format!("r{i}.yaml"), &route(i, "/"));
            write(dir.path(), &format!("s{i}.yaml"), &service(i));
        }
        let mut loader = IncrementalLoader::new(dir.path());
        let first = loader.reload().expect("the first read");
        assert!(first.is_clean(), "{:?}", first.errors);
        loader.accept();
        let mut times: Vec<Duration> = Vec::new();
        for edit in 0..EDITS {
            let i = (edit * 7919) % n;
            let name = format!("r{i}.yaml");
            write(dir.path(), &name, &route(i, &format!("/e{edit}")));
            let paths = BTreeSet::from([dir.path().join(&name)]);
            let start = Instant::now();
            let reload = loader.reload_paths(&paths).expect("a reload");
            times.push(start.elapsed());
            assert_eq!(reload.delta.upserts.len(), 1, "one object changed");
            loader.accept();
        }
        times.sort();
        let at = |q: f64| ms(times[((times.len() - 1) as f64 * q).round() as usize]);
        println!(
            "{:>7} {:<34} {:>20}",
            2 * n,
            "one IngressRoute's file",
            format!("{:.3} / {:.3}", at(0.5), at(0.9))
        );
    }
}
