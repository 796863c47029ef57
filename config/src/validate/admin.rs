//! Rules of `admin.allowed_hosts`.

use super::Validator;
use crate::host_guard::check_entry;
use crate::model::Admin;

impl Validator {
    pub(super) fn admin_hosts(&mut self, admin: &Admin) {
        for (i, entry) in admin.allowed_hosts.iter().enumerate() {
            if let Err(problem) = check_entry(entry) {
                self.err(format!("admin.allowed_hosts[{i}]"), problem);
            }
        }
        if admin.allowed_hosts.is_empty() && admin.listen.ip().is_unspecified() {
            self.err(
                "admin.allowed_hosts",
                format!(
                    "is empty and admin.listen ({}) is not a specific address, so no Host \
                     could reach the admin API; list the names it is called by",
                    admin.listen
                ),
            );
        }
    }
}
