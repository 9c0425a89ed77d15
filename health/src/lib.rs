//! rvs-healthd: keepalived's health checks for rvs. It reads keepalived.conf's LVS part
//! ([`conf`]), installs the virtual servers in rvsd over its control socket, runs TCP_CHECK,
//! HTTP_GET and MISC_CHECK ([`check`]) on its own threads ([`engine`]), and takes failed
//! real servers out and puts them back as keepalived would ([`state`]).
//!
//! No DPDK here: the checks use ordinary sockets, which on a director reach the real servers
//! through rvsd's kernel exception path. [`testlab`] builds network namespaces with nginx real
//! servers for the tests.

pub mod check;
pub mod conf;
pub mod engine;
pub mod state;
pub mod testlab;
pub mod vrrp;
