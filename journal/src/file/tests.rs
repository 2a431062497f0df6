use super::segment;

#[test]
fn segment_names_round_trip_and_strangers_are_ignored() {
    assert_eq!(segment::file_name(7), "segment-00000000000000000007.log");
    assert_eq!(segment::parse_file_name(&segment::file_name(7)), Some(7));
    assert_eq!(segment::parse_file_name("LOCK"), None);
    assert_eq!(segment::parse_file_name("segment-7.log"), None);
    assert_eq!(
        segment::parse_file_name("segment-0000000000000000000x.log"),
        None
    );
}
