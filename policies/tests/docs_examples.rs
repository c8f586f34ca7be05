//! Every YAML example in docs/policy-reference.md validates (those marked `<!-- invalid -->`
//! must fail), so the reference cannot drift from the code.

use meshmetric_policies::parse_documents;

#[test]
fn policy_reference_examples() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/policy-reference.md")).unwrap();
    let mut checked = 0;
    let mut invalid_next = false;
    let mut lines = text.lines();
    while let Some(l) = lines.next() {
        if l.trim() == "<!-- invalid -->" {
            invalid_next = true;
        }
        if l.trim() == "```yaml" {
            let block: Vec<&str> = lines.by_ref().take_while(|x| x.trim() != "```").collect();
            let r = parse_documents(&block.join("\n"));
            if invalid_next {
                assert!(r.is_err(), "example marked invalid parsed:\n{}", block.join("\n"));
            } else if let Err(e) = r {
                panic!("example does not validate: {e}\n{}", block.join("\n"));
            }
            invalid_next = false;
            checked += 1;
        }
    }
    assert!(checked >= 7, "only {checked} examples found");
}
