//! Projections and read models, and the mission's cascade delete by query.

use cascade_tests::{TestHost, only_handler_failure, plugins};
use serde_json::{Value, json};

fn projects_host(extra: &[&str]) -> TestHost {
    let mut list = vec![
        plugins::GROUP,
        plugins::PROJECT,
        plugins::GROUPS,
        plugins::PROJECTS,
        plugins::PROJECT_CASCADE,
    ];
    list.extend_from_slice(extra);
    TestHost::with(&list)
}

/// Every document of a collection, as (id, JSON).
fn collection(host: &mut TestHost, name: &str) -> Vec<(String, Value)> {
    let (docs, next) = host.runtime.pipeline().read_models().list(name, None, 1000).unwrap();
    assert!(next.is_none());
    docs.into_iter()
        .map(|(id, body)| (id, serde_json::from_str(&body).unwrap()))
        .collect()
}

fn group_with_two_projects(host: &mut TestHost) {
    assert!(host.exec("group", "g1", "create", r#"{"name":"Engineering"}"#).is_ok());
    assert!(
        host.exec("project", "p1", "create", r#"{"name":"Cascade","groupId":"g1"}"#)
            .is_ok()
    );
    assert!(
        host.exec("project", "p2", "create", r#"{"name":"Redb","groupId":"g1"}"#)
            .is_ok()
    );
    assert!(
        host.exec("project", "p3", "create", r#"{"name":"Other","groupId":"g2"}"#)
            .is_ok()
    );
}

#[test]
fn deleting_a_group_deletes_its_projects_found_by_query() {
    let mut host = projects_host(&[]);
    group_with_two_projects(&mut host);
    assert_eq!(collection(&mut host, "groups").len(), 1);
    assert_eq!(collection(&mut host, "projects").len(), 3);

    let settled = host.exec("group", "g1", "delete", "{}");

    assert!(settled.is_ok(), "{:?}", settled.failures);
    let deleted: Vec<(&str, &str)> = settled
        .events
        .iter()
        .map(|e| (e.name.as_str(), e.stream_id.as_str()))
        .collect();
    assert_eq!(
        deleted,
        [
            ("GroupDeleted", "g1"),
            ("ProjectDeleted", "p1"),
            ("ProjectDeleted", "p2")
        ]
    );
    assert!(collection(&mut host, "groups").is_empty());
    let left: Vec<String> = collection(&mut host, "projects")
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(left, ["p3"]);
}

#[test]
fn an_after_handler_sees_the_projection_write_of_the_same_event() {
    let mut host = projects_host(&[plugins::SEARCH_INDEX]);
    group_with_two_projects(&mut host);

    let settled = host.exec("project", "p1", "update", r#"{"name":"Cascade 2"}"#);

    let logged: Vec<&str> = settled.logs.iter().map(|l| l.message.as_str()).collect();
    assert_eq!(logged, [r#"index {"groupId":"g1","id":"p1","name":"Cascade 2"}"#]);
}

#[test]
fn rebuild_produces_the_same_read_models() {
    let mut host = projects_host(&[]);
    group_with_two_projects(&mut host);
    host.exec("project", "p3", "update", r#"{"name":"Renamed"}"#);
    host.exec("group", "g1", "delete", "{}");
    host.exec("group", "g3", "create", r#"{"name":"Design"}"#);
    let before = (collection(&mut host, "groups"), collection(&mut host, "projects"));
    assert_eq!(
        before.1,
        [("p3".to_owned(), json!({"id": "p3", "name": "Renamed", "groupId": "g2"}))]
    );

    let reports = host.runtime.pipeline().rebuild(&mut |_, _, _| {}).unwrap();

    let rebuilt: Vec<&str> = reports.iter().map(|r| r.listener.as_str()).collect();
    assert_eq!(rebuilt, ["groups", "projects"]);
    assert_eq!(
        (collection(&mut host, "groups"), collection(&mut host, "projects")),
        before
    );
    // The index was rebuilt too.
    let found = host
        .runtime
        .pipeline()
        .read_models()
        .find("projects", "groupId", r#""g2""#)
        .unwrap();
    assert_eq!(found.len(), 1);
    assert!(
        host.runtime
            .pipeline()
            .read_models()
            .find("projects", "groupId", r#""g1""#)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn a_find_by_a_field_that_is_not_indexed_fails_only_that_handler() {
    let mut host = projects_host(&[plugins::FIXTURE_BAD_QUERY]);
    assert!(host.exec("group", "g1", "create", r#"{"name":"G"}"#).is_ok());

    let settled = host.exec("project", "p1", "create", r#"{"name":"Cascade","groupId":"g1"}"#);

    let failure = only_handler_failure(&settled);
    assert_eq!(failure.plugin, "fixture-bad-query");
    assert_eq!(
        failure.message,
        "collection `projects` has no index on `name` (indexed: `groupId`); \
         index it in the projection or page through the collection with `list`"
    );
    // The projection's write for the same event stands.
    assert_eq!(collection(&mut host, "projects").len(), 1);
}

#[test]
fn queries_on_unknown_collections_and_writes_to_foreign_ones_are_refused() {
    let host = projects_host(&[]);
    let read_models = host.runtime.pipeline_ref().read_models();

    let err = read_models.get("planets", "x").unwrap_err();
    assert_eq!(
        err.to_string(),
        "no collection `planets` (declared: `groups`, `projects`)"
    );
    let err = read_models.put("groups", "projects", "p9", "{}").unwrap_err();
    assert_eq!(
        err,
        "`groups` cannot write collection `projects`: it belongs to projection `projects`"
    );
    let err = read_models.put("projects", "projects", "p9", "[1]").unwrap_err();
    assert_eq!(err, "document `p9` for `projects` must be a JSON object");
}

#[test]
fn read_models_survive_a_restart() {
    let mut host = projects_host(&[]);
    group_with_two_projects(&mut host);
    let before = collection(&mut host, "projects");

    let mut host = host.reopen(cascade::Options::default());

    assert_eq!(collection(&mut host, "projects"), before);
}

#[test]
fn a_redeployed_projection_that_indexes_another_field_finds_existing_documents_by_it() {
    let mut host = projects_host(&[]);
    group_with_two_projects(&mut host);
    let by_name = |host: &mut TestHost| {
        host.runtime
            .pipeline()
            .read_models()
            .find("projects", "name", r#""Redb""#)
    };
    assert!(by_name(&mut host).is_err(), "name is not indexed by the first build");

    // The build that also indexes `name`, deployed under the same name.
    let build = host.dir.path().join("projects.wasm");
    std::fs::copy(plugins::PROJECTS_BY_NAME, &build).unwrap();
    host.runtime.add_plugin(&build).unwrap();

    let found = by_name(&mut host).unwrap();
    assert_eq!(found.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(), ["p2"]);
    let in_g1 = host
        .runtime
        .pipeline()
        .read_models()
        .find("projects", "groupId", r#""g1""#)
        .unwrap();
    assert_eq!(in_g1.len(), 2, "the other index is intact");

    // And after a restart, which declares the collections again.
    let mut host = host.reopen(cascade::Options::default());
    assert_eq!(by_name(&mut host).unwrap().len(), 1);
}

#[test]
fn an_engine_handle_queries_the_last_commit_beside_the_writer_and_cannot_write() {
    let data = tempfile::tempdir().unwrap();
    let engine = cascade::Engine::start(
        data.path(),
        cascade::Options::default(),
        std::time::Duration::from_secs(5),
    )
    .unwrap();
    let handle = engine.handle();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        for plugin in [plugins::GROUP, plugins::PROJECT, plugins::GROUPS, plugins::PROJECTS] {
            handle
                .with_runtime(move |runtime| runtime.add_plugin(std::path::Path::new(plugin)).map(drop))
                .await
                .unwrap()
                .unwrap();
        }
        for (stream, id, args) in [
            ("group", "g1", r#"{"name":"Engineering"}"#),
            ("project", "p1", r#"{"name":"Cascade","groupId":"g1"}"#),
            ("project", "p2", r#"{"name":"Other","groupId":"g2"}"#),
        ] {
            let settled = handle
                .execute(cascade::Command::new(stream, id, "create", args))
                .await
                .unwrap();
            assert!(settled.is_ok(), "{:?}", settled.failures);
        }
    });
    let read_models = handle.read_models().clone();
    // From another thread, without a call to the writer.
    let (group, found, page) = std::thread::spawn(move || {
        (
            read_models.get("groups", "g1").unwrap(),
            read_models.find("projects", "groupId", r#""g1""#).unwrap(),
            read_models.list("projects", None, 10).unwrap(),
        )
    })
    .join()
    .unwrap();
    let group: Value = serde_json::from_str(&group.expect("g1 is committed")).unwrap();
    assert_eq!(group["name"], "Engineering");
    assert_eq!(found.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(), ["p1"]);
    assert_eq!(page.0.len(), 2);
    assert!(page.1.is_none());
    let refused = handle
        .read_models()
        .put("projects", "projects", "p9", "{}")
        .unwrap_err();
    assert!(refused.contains("cannot be written"), "{refused}");
    engine.shutdown();
}
