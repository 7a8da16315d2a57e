use berth_store::EmbeddedStore;

use super::*;

fn ecr() -> Ecr {
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::in_memory().unwrap());
    Ecr::new(
        store,
        Scope {
            region: "us-east-1".into(),
            account: "123456789012".into(),
        },
    )
}

fn manifest(layer: &Digest) -> NewManifest {
    let bytes = format!("{{\"layer\":\"{layer}\"}}").into_bytes();
    NewManifest {
        digest: Digest::of(&bytes),
        media_type: berth_oci::manifest::OCI_MANIFEST.into(),
        artifact_media_type: None,
        bytes,
        blobs: vec![(layer.clone(), 10)],
        manifests: vec![],
    }
}

#[tokio::test]
async fn push_needs_blobs_and_creates_the_repository() {
    let e = ecr();
    let layer = Digest::of(b"layer");
    let err = e
        .put_manifest("team/app", Some("v1"), manifest(&layer), Timestamp(1))
        .await
        .unwrap_err();
    assert!(matches!(err, EcrError::ManifestBlobUnknown { .. }), "{err}");
    e.link_blob("team/app", &layer, 10).await.unwrap();
    let rec = e
        .put_manifest("team/app", Some("v1"), manifest(&layer), Timestamp(1))
        .await
        .unwrap();
    assert_eq!(
        e.get_image("team/app", "v1").await.unwrap().unwrap().digest,
        rec.digest
    );
    assert_eq!(
        e.get_image("team/app", &rec.digest.to_string())
            .await
            .unwrap()
            .unwrap()
            .size,
        rec.size
    );
    assert_eq!(e.repository_names().await.unwrap(), ["team/app"]);
}

#[tokio::test]
async fn immutable_tags_cannot_move() {
    let e = ecr();
    e.create_repository(None, "imm", Some("IMMUTABLE"), vec![], Timestamp(0))
        .await
        .unwrap();
    let a = Digest::of(b"a");
    let b = Digest::of(b"b");
    e.link_blob("imm", &a, 10).await.unwrap();
    e.link_blob("imm", &b, 10).await.unwrap();
    e.put_manifest("imm", Some("v1"), manifest(&a), Timestamp(0))
        .await
        .unwrap();
    // The same manifest again is fine.
    e.put_manifest("imm", Some("v1"), manifest(&a), Timestamp(0))
        .await
        .unwrap();
    let err = e
        .put_manifest("imm", Some("v1"), manifest(&b), Timestamp(0))
        .await
        .unwrap_err();
    assert!(matches!(err, EcrError::ImageTagAlreadyExists { .. }));
}

#[tokio::test]
async fn deleting_the_last_tag_deletes_the_image() {
    let e = ecr();
    let a = Digest::of(b"a");
    e.link_blob("r1", &a, 10).await.unwrap();
    let rec = e
        .put_manifest("r1", Some("x"), manifest(&a), Timestamp(0))
        .await
        .unwrap();
    e.put_manifest("r1", Some("y"), manifest(&a), Timestamp(0))
        .await
        .unwrap();
    assert_eq!(
        e.delete_tag("r1", "x").await.unwrap(),
        Some(rec.digest.clone())
    );
    assert!(e
        .get_image("r1", &rec.digest.to_string())
        .await
        .unwrap()
        .is_some());
    e.delete_tag("r1", "y").await.unwrap();
    assert!(e
        .get_image("r1", &rec.digest.to_string())
        .await
        .unwrap()
        .is_none());
    let err = e.delete_repository(None, "nope", false).await.unwrap_err();
    assert!(matches!(err, EcrError::RepositoryNotFound(_)));
}

#[tokio::test]
async fn non_empty_repositories_need_force() {
    let e = ecr();
    let a = Digest::of(b"a");
    e.link_blob("r2", &a, 10).await.unwrap();
    e.put_manifest("r2", Some("x"), manifest(&a), Timestamp(0))
        .await
        .unwrap();
    assert!(matches!(
        e.delete_repository(None, "r2", false).await,
        Err(EcrError::RepositoryNotEmpty(_))
    ));
    e.delete_repository(None, "r2", true).await.unwrap();
    assert!(e.get_repository("r2").await.unwrap().is_none());
    assert!(e.blob_size("r2", &a).await.unwrap().is_none());
}

#[tokio::test]
async fn nested_repositories_do_not_share_keys() {
    let e = ecr();
    let a = Digest::of(b"a");
    for repo in ["aa", "aa/bb"] {
        e.link_blob(repo, &a, 10).await.unwrap();
    }
    let img = e
        .put_manifest("aa", Some("v1"), manifest(&a), Timestamp(0))
        .await
        .unwrap();
    e.put_manifest("aa/bb", Some("v1"), manifest(&a), Timestamp(0))
        .await
        .unwrap();
    e.put_manifest("aa/bb", Some("onlyb"), manifest(&a), Timestamp(0))
        .await
        .unwrap();
    assert_eq!(
        e.tags("aa").await.unwrap().keys().collect::<Vec<_>>(),
        ["v1"]
    );
    assert_eq!(e.images("aa").await.unwrap().len(), 1);
    assert!(e.get_image("aa", "bb/v1").await.unwrap().is_none());
    assert!(e.delete_image("aa", &img.digest).await.unwrap());
    assert!(e.get_image("aa/bb", "v1").await.unwrap().is_some());
    e.delete_repository(None, "aa", true).await.unwrap();
    assert_eq!(e.tags("aa/bb").await.unwrap().len(), 2);
    assert!(e.blob_size("aa/bb", &a).await.unwrap().is_some());
}

#[tokio::test]
async fn manifest_sizes_must_match_the_blobs() {
    let e = ecr();
    let a = Digest::of(b"a");
    e.link_blob("r3", &a, 11).await.unwrap();
    let err = e
        .put_manifest("r3", Some("x"), manifest(&a), Timestamp(0))
        .await
        .unwrap_err();
    assert!(matches!(err, EcrError::ManifestInvalid(_)), "{err}");
}
