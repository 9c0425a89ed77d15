//! Merging `-E`/`-e` edits with the daemon's state.

use super::command::Change;
use super::CliError;
use crate::model::{DestSpec, ServiceKey, ServiceSpec, ServiceStatus};
use crate::proto::Request;
use std::collections::BTreeMap;

/// The services as the daemon reported them, kept up to date while a batch of changes is
/// resolved, so that `-E`/`-e` fill in what the command line leaves out, even for a service
/// added earlier in the same `-R` input.
#[derive(Debug, Clone, Default)]
pub struct Table {
    services: BTreeMap<ServiceKey, Entry>,
}

/// One service and its real servers.
#[derive(Debug, Clone)]
struct Entry {
    spec: ServiceSpec,
    dests: Vec<DestSpec>,
}

impl Table {
    pub fn new(services: &[ServiceStatus]) -> Table {
        let services = services
            .iter()
            .map(|s| {
                let dests = s.dests.iter().map(|d| d.spec.clone()).collect();
                let entry = Entry {
                    spec: s.spec.clone(),
                    dests,
                };
                (s.spec.key, entry)
            })
            .collect();
        Table { services }
    }

    /// The request a change becomes; edits are merged with the current state, and the table
    /// is updated as the daemon will be. Errors use ipvsadm's wording for missing entries.
    pub fn resolve(&mut self, change: &Change) -> Result<Request, CliError> {
        let request = match change {
            Change::Apply(request) => request.clone(),
            Change::EditService(edit) => {
                let entry = self
                    .services
                    .get(&edit.key)
                    .ok_or_else(|| CliError("No such service".into()))?;
                Request::EditService(edit.apply(&entry.spec)?)
            }
            Change::EditDest(edit) => {
                let entry = self
                    .services
                    .get(&edit.service)
                    .ok_or_else(|| CliError("Service not defined".into()))?;
                let current = entry
                    .dests
                    .iter()
                    .find(|d| d.addr == edit.addr && d.port == edit.port)
                    .ok_or_else(|| CliError("No such destination".into()))?;
                Request::EditDest {
                    service: edit.service,
                    dest: edit.apply(current)?,
                }
            }
        };
        self.apply(&request);
        Ok(request)
    }

    /// Every service with its real servers, as the changes resolved so far leave them.
    pub fn services(&self) -> impl Iterator<Item = (&ServiceSpec, &[DestSpec])> {
        self.services
            .values()
            .map(|e| (&e.spec, e.dests.as_slice()))
    }

    fn apply(&mut self, request: &Request) {
        match request {
            Request::AddService(spec) => {
                self.services.entry(spec.key).or_insert_with(|| Entry {
                    spec: spec.clone(),
                    dests: Vec::new(),
                });
            }
            Request::EditService(spec) => {
                if let Some(entry) = self.services.get_mut(&spec.key) {
                    entry.spec = spec.clone();
                }
            }
            Request::DelService(key) => {
                self.services.remove(key);
            }
            Request::AddDest { service, dest } | Request::EditDest { service, dest } => {
                if let Some(entry) = self.services.get_mut(service) {
                    let dests = &mut entry.dests;
                    dests.retain(|d| (d.addr, d.port) != (dest.addr, dest.port));
                    dests.push(dest.clone());
                }
            }
            Request::DelDest {
                service,
                addr,
                port,
            } => {
                if let Some(entry) = self.services.get_mut(service) {
                    entry.dests.retain(|d| (d.addr, d.port) != (*addr, *port));
                }
            }
            Request::Clear => self.services.clear(),
            Request::List { .. }
            | Request::ListConns
            | Request::Zero { .. }
            | Request::SetTimeouts(_)
            | Request::GetTimeouts
            | Request::Counters
            | Request::GetSysctls
            | Request::SetSysctls(_)
            | Request::ListNeighbours
            | Request::AddNeighbour(_)
            | Request::DelNeighbour { .. }
            | Request::Ports { .. }
            | Request::Version
            | Request::SetSyncRole { .. }
            | Request::SyncStatus
            | Request::Reload
            | Request::SetVirtualAddrs { .. }
            | Request::ListVirtualAddrs => {}
        }
    }
}
