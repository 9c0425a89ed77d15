//! Generates bindings to the system DPDK with bindgen and compiles C wrappers for its static
//! inline functions (`rte_eth_rx_burst`, `rte_pktmbuf_alloc`, ...), which have no symbol to link.

use std::env;
use std::path::PathBuf;
use std::process::Command;

const MIN_DPDK: &str = "22.11";

fn main() {
    println!("cargo:rerun-if-changed=wrapper.h");
    println!("cargo:rerun-if-changed=build.rs");

    let lib = match pkg_config::Config::new()
        .atleast_version(MIN_DPDK)
        .probe("libdpdk")
    {
        Ok(lib) => lib,
        Err(e) => panic!(
            "\n\nDPDK >= {MIN_DPDK} was not found by pkg-config ({e}).\n\
             On Debian/Ubuntu install it with:\n    \
             apt-get install dpdk libdpdk-dev libclang-dev pkg-config\n\
             (or run scripts/setup.sh as root)\n\n"
        ),
    };

    // pkg-config-rs drops `-include rte_config.h` and `-march=...`; DPDK's headers need both, so
    // take the compiler flags from pkg-config directly, for bindgen and for cc alike.
    let cflags = Command::new("pkg-config")
        .args(["--cflags", "libdpdk"])
        .output()
        .expect("running pkg-config --cflags libdpdk");
    let cflags: Vec<String> = String::from_utf8(cflags.stdout)
        .expect("pkg-config output is UTF-8")
        .split_whitespace()
        .map(str::to_owned)
        .collect();

    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let header = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap()).join("wrapper.h");
    let wrappers = out.join("static_wrappers");

    let bindings = bindgen::Builder::default()
        .header(header.to_str().unwrap())
        .clang_args(&cflags)
        .allowlist_function("rte_.*")
        .allowlist_function("rvs_.*")
        .allowlist_type("rte_.*")
        .allowlist_var("RTE_.*")
        .allowlist_var("rte_.*")
        // glibc's custom streams: rte_openlog_stream takes a FILE whose writes rvsd handles.
        .allowlist_function("fopencookie")
        .allowlist_type("cookie_io_functions_t")
        // Packed structs holding aligned members: bindgen cannot lay them out; rvs parses ARP in Rust.
        .opaque_type("rte_arp_ipv4")
        .opaque_type("rte_arp_hdr")
        .opaque_type("rte_l2tpv2_combined_msg_hdr")
        .opaque_type("rte_gtp_psc_.*")
        .derive_default(true)
        .layout_tests(false)
        .generate_comments(false)
        .wrap_static_fns(true)
        .wrap_static_fns_path(&wrappers)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .generate()
        .expect("bindgen failed on the DPDK headers");
    bindings
        .write_to_file(out.join("bindings.rs"))
        .expect("writing bindings.rs");

    let mut build = cc::Build::new();
    build
        .file(wrappers.with_extension("c"))
        .include(header.parent().unwrap())
        .warnings(false)
        .opt_level(3);
    for f in &cflags {
        build.flag(f);
    }
    build.compile("rvs_dpdk_wrappers");

    for l in &lib.libs {
        println!("cargo:rustc-link-lib={l}");
    }
    for p in &lib.link_paths {
        println!("cargo:rustc-link-search=native={}", p.display());
    }
}
