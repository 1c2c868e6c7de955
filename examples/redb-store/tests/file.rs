//! A store on a file keeps what was committed, and only that, when it is opened again.

use evently_core::{Changes, Store};
use example_redb_store::RedbStore;

#[tokio::test]
async fn committed_data_survives_a_reopen() {
    let path =
        std::env::temp_dir().join(format!("evently-redb-test-{}.redb", uuid::Uuid::new_v4()));
    let (kept, dropped) = (sample_user("kept"), sample_user("dropped"));
    {
        let store = RedbStore::open(&path).expect("create the file");
        for (user, commit) in [(&kept, true), (&dropped, false)] {
            let mut tx = store.begin().await.expect("begin");
            let changes = Changes {
                new_users: vec![user.clone()],
                ..Changes::default()
            };
            tx.apply(changes).await.expect("apply");
            if commit {
                tx.commit().await.expect("commit");
            }
        }
    }
    let store = RedbStore::open(&path).expect("open the file again");
    let mut tx = store.begin_read().await.expect("begin_read");
    assert_eq!(tx.user(kept.id).await.expect("read"), Some(kept));
    assert_eq!(tx.user(dropped.id).await.expect("read"), None);
    drop((tx, store));
    std::fs::remove_file(&path).expect("remove the file");
}

fn sample_user(name: &str) -> evently_core::User {
    evently_core::User {
        id: evently_core::UserId::new(),
        email: format!("{name}@example.com"),
        name: name.into(),
        password_hash: "unused".into(),
        role: evently_core::Role::User,
        attributes: Default::default(),
        created_at: chrono::Utc::now(),
    }
}
