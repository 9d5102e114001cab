use super::*;

#[test]
fn locks_conflict_only_when_one_side_is_exclusive() {
    let held = vec![
        Lock::exclusive("target a".into()),
        Lock::shared("backup b1".into()),
    ];
    let job = "j1".to_owned();
    let running = || [(&job, held.as_slice())];
    assert!(conflict(running(), &[Lock::exclusive("backup b1".into())]).is_some());
    assert!(conflict(running(), &[Lock::shared("backup b1".into())]).is_none());
    assert!(conflict(running(), &[Lock::exclusive("target a".into())]).is_some());
    assert!(conflict(running(), &[Lock::exclusive("backup b2".into())]).is_none());
}
