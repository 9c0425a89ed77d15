//! VRRPv3 (RFC 5798, IPv4 and IPv6) for rvsd's addresses, from keepalived.conf's
//! `vrrp_instance` blocks ([`crate::conf::vrrp`]): [`advert`] (the message and its checks),
//! [`machine`] (one instance's state machine, no clock or I/O), [`run`] (the raw sockets on an
//! rvsd port's kernel twin, track and notify scripts, and the requests to rvsd).
//!
//! The master holds its virtual addresses in rvsd (`SetVirtualAddrs held=true`: rvsd answers
//! ARP or neighbour solicitations for them and announces them with gratuitous ARPs or
//! unsolicited neighbour advertisements); leaving MASTER it releases them first.

pub mod advert;
pub mod machine;
pub mod run;
