//! VRRPv3 (RFC 5798, IPv4) for rvsd's addresses, from keepalived.conf's `vrrp_instance` blocks
//! ([`crate::conf::vrrp`]): [`advert`] (the message and its checks), [`machine`] (one
//! instance's state machine, no clock or I/O), [`run`] (the raw socket on an rvsd port's
//! kernel twin, track and notify scripts, and the requests to rvsd).
//!
//! The master holds its virtual addresses in rvsd (`SetVirtualAddrs held=true`: rvsd answers
//! ARP for them and sends gratuitous ARPs); leaving MASTER it releases them first.

pub mod advert;
pub mod machine;
pub mod run;
