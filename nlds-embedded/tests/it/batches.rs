//! A put and a get spread over many batches (`[workers.index] batch_files = 3`, which sizes the
//! indexer's and the catalogue's batches): hard links whose names the walk meets in different
//! batches are still stored once and restored as hard links; and the extended attributes a put
//! stored are shown by `find` (API and CLI), escaped for humans.

use std::collections::HashSet;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nlds_core::State;
use nlds_embedded::{Embedded, EmbeddedOptions};
use nlds_server::ServerSettings;
use serde_json::json;

use crate::cli::{Cli, s};
use crate::helpers::{Api, restored, temp};

/// The objects the embedded S3 server holds (its files, without its own metadata).
fn objects(data: &Path) -> usize {
    walkdir::WalkDir::new(data.join("objects"))
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .filter(|e| !e.file_name().as_bytes().starts_with(b"."))
        .filter(|e| {
            let key = format!("/{}/", nlds_storage::s3::KEY_PREFIX);
            e.path().to_string_lossy().contains(&key)
        })
        .count()
}

async fn small_batches(data: &Path) -> Embedded {
    let mut settings = ServerSettings::default();
    settings.workers.index.batch_files = 3;
    Embedded::start(EmbeddedOptions {
        data_dir: data.to_owned(),
        listen: "127.0.0.1:0".parse().unwrap(),
        external_object_store: None,
        settings,
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hard_links_across_batches_are_stored_once_and_restored_as_links() {
    let data = temp();
    let e = small_batches(data.path()).await;
    let api = Api::new(&e.url, &e.token);
    let top = temp();
    let src = top.path().join("src");
    // Names of one inode in three directories, with plenty of files between them in the walk.
    for d in ["a", "m", "z"] {
        std::fs::create_dir_all(src.join(d)).unwrap();
        for i in 0..5 {
            std::fs::write(src.join(d).join(format!("f{i}")), format!("{d}{i}")).unwrap();
        }
    }
    std::fs::write(src.join("a/linked"), b"one inode, three names").unwrap();
    std::fs::hard_link(src.join("a/linked"), src.join("m/linked")).unwrap();
    std::fs::hard_link(src.join("a/linked"), src.join("z/linked")).unwrap();
    // A name outside the put: the two inside are still one object.
    std::fs::write(src.join("m/pair"), b"two names inside, one outside").unwrap();
    std::fs::hard_link(src.join("m/pair"), src.join("z/pair")).unwrap();
    std::fs::hard_link(src.join("m/pair"), top.path().join("outside")).unwrap();

    let put = api
        .put_and_wait(json!({"paths": [s(&src)], "label": "links"}))
        .await;
    assert_eq!(put.state, State::Complete, "{put:#?}");
    // 15 plain files, 5 names of 2 inodes (the 4 directories are not counted as files).
    assert_eq!(put.files_done, 15 + 5, "{put:#?}");
    assert_eq!(
        objects(data.path()),
        15 + 2,
        "one object per inode: the later names share their first name's"
    );

    let target = temp();
    let get = api
        .get_and_wait(json!({
            "paths": [s(&src)],
            "label": "links",
            "target": s(target.path()),
        }))
        .await;
    assert_eq!(get.state, State::Complete, "{get:#?}");
    let back = restored(target.path(), &src);
    let inode = |rel: &str| std::fs::metadata(back.join(rel)).unwrap().ino();
    let linked: HashSet<u64> = ["a/linked", "m/linked", "z/linked"]
        .iter()
        .map(|r| inode(r))
        .collect();
    assert_eq!(linked.len(), 1, "three names, one inode");
    assert_eq!(std::fs::metadata(back.join("a/linked")).unwrap().nlink(), 3);
    assert_eq!(inode("m/pair"), inode("z/pair"));
    assert_eq!(
        std::fs::read(back.join("z/linked")).unwrap(),
        b"one inode, three names"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn find_shows_the_extended_attributes_a_put_stored() {
    let data = temp();
    let e = small_batches(data.path()).await;
    let api = Api::new(&e.url, &e.token);
    let top = temp();
    let file = top.path().join("noted.txt");
    std::fs::write(&file, b"with attributes").unwrap();
    if rustix::fs::setxattr(
        &file,
        "user.comment",
        b"run 42\n\xff\"",
        rustix::fs::XattrFlags::empty(),
    )
    .is_err()
    {
        // The file system has no user attributes: nothing to show (CI's has them).
        assert!(
            std::env::var_os("CI").is_none(),
            "{} has no user extended attributes",
            top.path().display()
        );
        return;
    }
    let put = api
        .put_and_wait(json!({"paths": [s(&file)], "label": "attrs"}))
        .await;
    assert_eq!(put.state, State::Complete, "{put:#?}");

    let (status, page) = api
        .get(&format!("/api/v2/files?label=attrs&path={}", s(&file)))
        .await;
    assert_eq!(status, 200, "{page}");
    let attrs = &page["files"][0]["xattrs"];
    assert_eq!(
        attrs,
        &json!([{
            "name": "user.comment",
            "value": "run 42\\n\\xff\\\"",
            "base64": "cnVuIDQyCv8i",
        }]),
        "{page}"
    );

    let c = Cli {
        url: e.url.clone(),
        token: e.token.clone(),
        cwd: top.path().to_owned(),
    };
    let shown = c.ok(&["find", "-l", "attrs", "-p", &s(&file)]);
    assert!(
        shown.contains(r#"user.comment="run 42\n\xff\"""#),
        "{shown}"
    );
}
