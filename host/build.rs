//! The contract version is written once, in `wit/`'s `package` line; the
//! host gets it from there as `CASCADE_CONTRACT_VERSION`.

fn main() {
    let types = concat!(env!("CARGO_MANIFEST_DIR"), "/../wit/types.wit");
    println!("cargo:rerun-if-changed={types}");
    let text = std::fs::read_to_string(types).expect("wit/types.wit is readable");
    let version = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("package cascade:runtime@"))
        .and_then(|rest| rest.strip_suffix(';'))
        .expect("wit/types.wit declares `package cascade:runtime@VERSION;`");
    println!("cargo:rustc-env=CASCADE_CONTRACT_VERSION={version}");
}
