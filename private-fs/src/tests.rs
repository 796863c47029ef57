//! Unit tests: modes of what is created, refusal of readable secrets, and
//! atomic replacement of an existing file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, Permissions::from_mode(mode)).unwrap();
}

#[test]
fn create_dir_makes_0700_parents_and_leaves_an_existing_one_alone() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("a/b");
    create_dir(&dir).unwrap();
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&root.path().join("a")), 0o700);
    set_mode(&dir, 0o755);
    create_dir(&dir).unwrap();
    assert_eq!(mode(&dir), 0o755);
}

#[test]
fn ensure_dir_tightens_an_existing_directory() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("d");
    fs::create_dir(&dir).unwrap();
    set_mode(&dir, 0o755);
    ensure_dir(&dir).unwrap();
    assert_eq!(mode(&dir), 0o700);
}

#[test]
fn a_directory_under_a_file_is_an_error_naming_the_path() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("f");
    fs::write(&file, "x").unwrap();
    let err = ensure_dir(&file.join("d")).unwrap_err();
    assert!(matches!(err, PrivateFsError::Io { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&*file.display().to_string()),
        "{err}"
    );
}

#[test]
fn write_atomic_replaces_an_existing_file_with_a_0600_one() {
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("secret");
    fs::write(&path, "old, longer content").unwrap();
    set_mode(&path, 0o644);
    // A leftover temporary file of a crashed writer, readable by others.
    fs::write(temp_path(&path), "stale").unwrap();
    set_mode(&temp_path(&path), 0o644);
    write_atomic(&path, b"new").unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"new");
    assert_eq!(mode(&path), 0o600);
    assert!(
        !temp_path(&path).exists(),
        "the temporary file is renamed away"
    );
    assert_eq!(
        fs::read_dir(root.path()).unwrap().count(),
        1,
        "nothing else is left in the directory"
    );
}

#[test]
fn a_failed_atomic_write_leaves_the_old_file() {
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("secret");
    fs::write(&path, "old").unwrap();
    // The temporary file cannot be created: its directory does not exist.
    let temp = root.path().join("missing/tmp");
    let err = write_atomic_via(&path, &temp, b"new").unwrap_err();
    assert_eq!(err.path(), temp);
    assert_eq!(fs::read(&path).unwrap(), b"old");
}

#[test]
fn temp_path_is_a_hidden_sibling() {
    assert_eq!(
        temp_path(Path::new("/d/salt-7")),
        Path::new("/d/.salt-7.tmp")
    );
    assert_eq!(temp_path(Path::new("key")), Path::new(".key.tmp"));
}

#[test]
fn create_new_writes_0600_and_refuses_to_replace() {
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("k");
    create_new(&path, b"first").unwrap();
    assert_eq!(mode(&path), 0o600);
    let err = create_new(&path, b"second").unwrap_err();
    assert_eq!(err.io_kind(), Some(io::ErrorKind::AlreadyExists));
    assert_eq!(fs::read(&path).unwrap(), b"first", "the file is kept");
}

#[test]
fn open_append_creates_0600_tightens_and_appends() {
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("log");
    open_append(&path).unwrap().write_all(b"a").unwrap();
    assert_eq!(mode(&path), 0o600);
    set_mode(&path, 0o644);
    open_append(&path).unwrap().write_all(b"b").unwrap();
    assert_eq!(mode(&path), 0o600);
    assert_eq!(fs::read(&path).unwrap(), b"ab");
}

#[test]
fn open_write_creates_0600_tightens_and_writes_in_place() {
    use std::os::unix::fs::FileExt;
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("segment");
    open_write(&path).unwrap().write_all(b"abcd").unwrap();
    assert_eq!(mode(&path), 0o600);
    set_mode(&path, 0o644);
    let file = open_write(&path).unwrap();
    assert_eq!(mode(&path), 0o600);
    // Not in append mode: a positional write lands where it is aimed.
    file.write_all_at(b"X", 1).unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"aXcd");
}

#[test]
fn read_secret_reads_a_0600_or_0400_file() {
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("token");
    fs::write(&path, "s3cret\n").unwrap();
    set_mode(&path, 0o600);
    assert_eq!(read_secret(&path, 64).unwrap().as_str(), "s3cret\n");
    set_mode(&path, 0o400);
    assert_eq!(read_secret(&path, 64).unwrap().as_str(), "s3cret\n");
}

#[test]
fn read_secret_refuses_group_or_other_bits_naming_path_and_mode() {
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("token");
    fs::write(&path, "s3cret").unwrap();
    for bad in [0o640, 0o604, 0o620, 0o602, 0o610, 0o601, 0o644] {
        set_mode(&path, bad);
        let err = read_secret(&path, 64).unwrap_err();
        let PrivateFsError::InsecureMode { path: named, mode } = &err else {
            panic!("{bad:o}: {err:?}");
        };
        assert_eq!((named.as_path(), *mode), (path.as_path(), bad));
        let text = err.to_string();
        assert!(text.contains(&format!("{bad:o}")), "{text}");
        assert!(text.contains(&*path.display().to_string()), "{text}");
        assert!(
            !text.contains("s3cret"),
            "the secret is never shown: {text}"
        );
    }
}

#[test]
fn read_secret_refuses_large_non_utf8_and_non_regular_files() {
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("big");
    fs::write(&path, "12345").unwrap();
    set_mode(&path, 0o600);
    assert!(read_secret(&path, 5).is_ok());
    assert!(matches!(
        read_secret(&path, 4),
        Err(PrivateFsError::TooLarge { max_len: 4, .. })
    ));
    fs::write(&path, [0xff, 0xfe]).unwrap();
    assert!(matches!(
        read_secret(&path, 64),
        Err(PrivateFsError::NotUtf8 { .. })
    ));
    let dir = root.path().join("dir");
    fs::create_dir(&dir).unwrap();
    set_mode(&dir, 0o700);
    assert!(matches!(
        read_secret(&dir, 64),
        Err(PrivateFsError::NotRegularFile { .. })
    ));
    let missing = read_secret(&root.path().join("none"), 64).unwrap_err();
    assert_eq!(missing.io_kind(), Some(io::ErrorKind::NotFound));
}
