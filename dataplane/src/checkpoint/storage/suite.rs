//! One behavioural suite run against every backend: a local temporary directory, and the HDFS
//! named by `MESOFLOW_TEST_HDFS` (`scripts/services.sh start` provides one). Without that
//! variable the HDFS tests fail under CI and are skipped, loudly, elsewhere.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::hdfs::HdfsStorage;
use super::local::LocalStorage;
use super::{CheckpointStorage, StorageError, is_temp_name};

fn pattern(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect::<Vec<_>>()
        .into()
}

async fn write_read_overwrite(s: &dyn CheckpointStorage) {
    let first = pattern(1000, 1);
    s.write("chk-1/op-a/part-0", first.clone()).await.unwrap();
    assert_eq!(s.read("chk-1/op-a/part-0").await.unwrap(), first);

    let second = pattern(777, 2);
    s.write("chk-1/op-a/part-0", second.clone()).await.unwrap();
    assert_eq!(s.read("chk-1/op-a/part-0").await.unwrap(), second);

    s.write("chk-1/empty", Bytes::new()).await.unwrap();
    assert_eq!(s.read("chk-1/empty").await.unwrap(), Bytes::new());

    // Several HDFS packets (64 KiB each) and more than one local write call.
    let large = pattern(5 * 1024 * 1024 + 13, 3);
    s.write("chk-1/large", large.clone()).await.unwrap();
    assert_eq!(s.read("chk-1/large").await.unwrap(), large);

    // Equivalent spellings of one path name one file.
    assert_eq!(s.read("./chk-1//op-a/part-0/").await.unwrap(), second);
}

async fn list_and_delete(s: &dyn CheckpointStorage) {
    for name in ["x", "y", "sub/z"] {
        s.write(&format!("dir/{name}"), pattern(10, 4))
            .await
            .unwrap();
    }
    assert_eq!(s.list("dir").await.unwrap(), ["sub", "x", "y"]);
    assert_eq!(s.list("dir/sub").await.unwrap(), ["z"]);
    assert!(s.list("").await.unwrap().contains(&"dir".to_owned()));
    assert_eq!(s.list("missing").await.unwrap(), Vec::<String>::new());

    s.delete("dir/x").await.unwrap();
    assert_eq!(s.list("dir").await.unwrap(), ["sub", "y"]);
    assert!(matches!(
        s.read("dir/x").await,
        Err(StorageError::NotFound { .. })
    ));
    s.delete("dir/x").await.unwrap();
    s.delete("never/existed").await.unwrap();

    s.delete_dir("dir").await.unwrap();
    assert_eq!(s.list("dir").await.unwrap(), Vec::<String>::new());
    assert!(matches!(
        s.read("dir/sub/z").await,
        Err(StorageError::NotFound { .. })
    ));
    s.delete_dir("dir").await.unwrap();
}

async fn paths_cannot_escape_the_root(s: &dyn CheckpointStorage) {
    let data = Bytes::from_static(b"x");
    for bad in ["../outside", "a/../../outside", "/etc/passwd", "", "."] {
        assert!(s.write(bad, data.clone()).await.is_err(), "write {bad:?}");
        assert!(s.read(bad).await.is_err(), "read {bad:?}");
        assert!(s.delete(bad).await.is_err(), "delete {bad:?}");
        assert!(s.delete_dir(bad).await.is_err(), "delete_dir {bad:?}");
    }
    for bad in ["..", "../x", "/"] {
        assert!(s.list(bad).await.is_err(), "list {bad:?}");
    }
}

async fn concurrent_writes(s: Arc<dyn CheckpointStorage>) {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..16u8 {
        let s = Arc::clone(&s);
        tasks.spawn(async move {
            s.write(
                &format!("conc/f{i:02}"),
                pattern(100_000 + usize::from(i), i),
            )
            .await
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap().unwrap();
    }
    let names = s.list("conc").await.unwrap();
    let expected: Vec<String> = (0..16).map(|i| format!("f{i:02}")).collect();
    assert_eq!(names, expected);
    for i in 0..16u8 {
        let got = s.read(&format!("conc/f{i:02}")).await.unwrap();
        assert_eq!(got, pattern(100_000 + usize::from(i), i), "f{i:02}");
    }
}

// ---- local ----

fn local() -> (tempfile::TempDir, Arc<dyn CheckpointStorage>) {
    let dir = tempfile::tempdir().unwrap();
    let s = LocalStorage::new(dir.path().join("root")).unwrap();
    (dir, Arc::new(s))
}

fn raw_names(dir: &std::path::Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect()
}

#[tokio::test]
async fn local_write_read_overwrite() {
    let (_dir, s) = local();
    write_read_overwrite(&*s).await;
}

#[tokio::test]
async fn local_list_and_delete() {
    let (_dir, s) = local();
    list_and_delete(&*s).await;
}

#[tokio::test]
async fn local_paths_cannot_escape_the_root() {
    let (dir, s) = local();
    paths_cannot_escape_the_root(&*s).await;
    assert!(!dir.path().join("outside").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_concurrent_writes() {
    let (_dir, s) = local();
    concurrent_writes(s).await;
}

#[tokio::test]
async fn local_writes_leave_no_temporary_file() {
    let (dir, s) = local();
    for i in 0..3 {
        s.write("chk/_metadata", pattern(100, i)).await.unwrap();
    }
    s.write("chk/seg", pattern(100, 9)).await.unwrap();
    let root = dir.path().join("root");
    assert_eq!(
        raw_names(&root.join("chk")),
        ["_metadata", "seg"].map(String::from).into()
    );
    assert_eq!(s.uri(), format!("file://{}", root.display()));
}

#[tokio::test]
async fn local_list_hides_a_crashed_write_and_a_file_is_not_a_directory() {
    let (dir, s) = local();
    s.write("chk/a", pattern(1, 1)).await.unwrap();
    let leftover = dir.path().join("root/chk").join(super::temp_name("b"));
    std::fs::write(&leftover, b"half").unwrap();
    assert!(is_temp_name(
        &leftover.file_name().unwrap().to_string_lossy()
    ));
    assert_eq!(s.list("chk").await.unwrap(), ["a"]);
    assert!(matches!(
        s.list("chk/a").await,
        Err(StorageError::Io { .. })
    ));
    assert!(matches!(s.read("chk").await, Err(StorageError::Io { .. })));
}

#[tokio::test]
async fn local_storage_opened_from_a_file_uri() {
    let dir = tempfile::tempdir().unwrap();
    let uri = format!("file://{}/ckpt", dir.path().display());
    let s = super::open(&uri).unwrap();
    assert_eq!(s.uri(), uri);
    s.write("x", Bytes::from_static(b"hello")).await.unwrap();
    assert_eq!(
        std::fs::read(dir.path().join("ckpt/x")).unwrap(),
        b"hello".as_slice()
    );
    let again = super::open(&format!("{}/ckpt", dir.path().display())).unwrap();
    assert_eq!(again.read("x").await.unwrap(), Bytes::from_static(b"hello"));
}

// ---- HDFS ----

/// The test cluster's URI, or `None` (after saying so) when there is none outside CI.
fn test_hdfs() -> Option<String> {
    match std::env::var("MESOFLOW_TEST_HDFS") {
        Ok(uri) if !uri.trim().is_empty() => Some(uri.trim().trim_end_matches('/').to_owned()),
        _ if std::env::var_os("CI").is_some() => panic!(
            "MESOFLOW_TEST_HDFS is not set but CI is: the HDFS tests must run in CI \
             (eval \"$(scripts/services.sh start)\" provides the variable)"
        ),
        _ => {
            eprintln!(
                "skipped: MESOFLOW_TEST_HDFS is not set; eval \"$(scripts/services.sh start)\" to run the HDFS tests"
            );
            None
        }
    }
}

/// A fresh directory of the test cluster, and its HDFS path for raw checks.
fn hdfs(test: &str) -> Option<(Arc<HdfsStorage>, String, String)> {
    let cluster = test_hdfs()?;
    let dir = format!("/mesoflow-tests/{test}-{:08x}", rand::random::<u32>());
    let s = HdfsStorage::with_timeout(&format!("{cluster}{dir}"), Duration::from_secs(60)).unwrap();
    Some((Arc::new(s), cluster, dir))
}

/// Names in an HDFS directory as the NameNode lists them, temporary files included.
async fn hdfs_raw_names(cluster: &str, dir: &str) -> BTreeSet<String> {
    let client = hdfs_native::ClientBuilder::new()
        .with_url(cluster)
        .build()
        .unwrap();
    client
        .list_status(dir, false)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.path.rsplit('/').next().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn hdfs_write_read_overwrite() {
    let Some((s, cluster, dir)) = hdfs("write-read") else {
        return;
    };
    write_read_overwrite(&*s).await;
    // The file really is in HDFS, under the storage's root, with the temporary names gone.
    assert_eq!(
        hdfs_raw_names(&cluster, &format!("{dir}/chk-1")).await,
        ["empty", "large", "op-a"].map(String::from).into()
    );
    s.delete_dir("chk-1").await.unwrap();
}

#[tokio::test]
async fn hdfs_list_and_delete() {
    let Some((s, ..)) = hdfs("list-delete") else {
        return;
    };
    list_and_delete(&*s).await;
}

#[tokio::test]
async fn hdfs_paths_cannot_escape_the_root() {
    let Some((s, ..)) = hdfs("escape") else {
        return;
    };
    paths_cannot_escape_the_root(&*s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hdfs_concurrent_writes() {
    let Some((s, cluster, dir)) = hdfs("concurrent") else {
        return;
    };
    concurrent_writes(s.clone()).await;
    assert_eq!(
        hdfs_raw_names(&cluster, &format!("{dir}/conc")).await.len(),
        16
    );
    s.delete_dir("conc").await.unwrap();
}

#[tokio::test]
async fn hdfs_writes_leave_no_temporary_file() {
    let Some((s, cluster, dir)) = hdfs("no-temp") else {
        return;
    };
    for i in 0..3 {
        s.write("chk/_metadata", pattern(100, i)).await.unwrap();
    }
    s.write("chk/seg", pattern(100, 9)).await.unwrap();
    assert_eq!(
        hdfs_raw_names(&cluster, &format!("{dir}/chk")).await,
        ["_metadata", "seg"].map(String::from).into()
    );
    assert_eq!(s.read("chk/_metadata").await.unwrap(), pattern(100, 2));
    s.delete_dir("chk").await.unwrap();
}

#[tokio::test]
async fn hdfs_storage_opened_by_uri() {
    let Some(cluster) = test_hdfs() else {
        return;
    };
    let uri = format!(
        "{cluster}/mesoflow-tests/open-{:08x}",
        rand::random::<u32>()
    );
    let s = super::open(&uri).unwrap();
    assert_eq!(s.uri(), uri);
    s.write("seg", Bytes::from_static(b"state")).await.unwrap();
    assert_eq!(s.read("seg").await.unwrap(), Bytes::from_static(b"state"));
    assert_eq!(s.list("").await.unwrap(), ["seg"]);
    s.delete("seg").await.unwrap();
    assert!(s.list("").await.unwrap().is_empty());
}

/// A loopback port that nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test]
async fn hdfs_unreachable_namenode_fails_quickly_and_says_so() {
    let port = closed_port();
    let s = HdfsStorage::with_timeout(
        &format!("hdfs://127.0.0.1:{port}/ckpt"),
        Duration::from_secs(3),
    )
    .unwrap();
    let started = Instant::now();
    let err = s.write("x", Bytes::from_static(b"x")).await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    let message = err.to_string();
    assert!(
        message.contains(&format!("NameNode 127.0.0.1:{port} unreachable")),
        "{message}"
    );
    assert!(matches!(err, StorageError::Io { op: "write", .. }));
    for err in [
        s.read("x").await.map(drop).unwrap_err(),
        s.list("").await.map(drop).unwrap_err(),
        s.delete_dir("x").await.unwrap_err(),
    ] {
        assert!(err.to_string().contains("unreachable"), "{err}");
    }
}

#[tokio::test]
async fn hdfs_silent_namenode_is_cut_off_by_the_timeout() {
    // Accepts connections (through the backlog) but never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let s = HdfsStorage::with_timeout(
        &format!("hdfs://127.0.0.1:{port}/ckpt"),
        Duration::from_millis(800),
    )
    .unwrap();
    let started = Instant::now();
    let err = s.list("").await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert!(
        err.to_string().contains(&format!(
            "NameNode 127.0.0.1:{port} unreachable or not answering"
        )),
        "{err}"
    );
    drop(listener);
}

#[test]
fn hdfs_uris_are_checked() {
    let s = HdfsStorage::new("hdfs://nn:8020/a/b/").unwrap();
    assert_eq!(s.uri(), "hdfs://nn:8020/a/b");
    assert_eq!(s.timeout(), super::hdfs::DEFAULT_TIMEOUT);
    assert_eq!(
        HdfsStorage::new("hdfs://nn:8020").unwrap().uri(),
        "hdfs://nn:8020"
    );
    for bad in [
        "hdfs://",
        "hdfs://:8020/x",
        "hdfs://nn:notaport/x",
        "hdfs://nn:8020/../x",
        "hdfs://user@nn:8020/x",
        "hdfs://nn:8020/x?y",
        "file:///x",
    ] {
        assert!(
            matches!(HdfsStorage::new(bad), Err(StorageError::Unsupported { .. })),
            "{bad}"
        );
    }
}
