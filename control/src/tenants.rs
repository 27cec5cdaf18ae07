//! `jetmon tenants import FILE`: which tenant owns which sites, from CSV rows `tenant,site`
//! (docs/tenants.md). `tenant` is a tenant's id or name; `site` is a site id or a URL (every
//! site whose main URL it is). A header line (`tenant_id,site_id`, `tenant_id,url`, …),
//! blank lines and `#` comments are skipped. Every bad row is named by its line and nothing is
//! written unless every row is good; importing the same file twice changes nothing the second
//! time; sites move, nothing is deleted. Parsing is pure; [`plan`] resolves rows against the
//! store and [`Plan::apply`] writes them in one transaction.

use std::collections::HashMap;

use anyhow::Result;
use jetmon_store::{Store, tenant_name_problem};

/// What a row names as its site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SiteRef {
    Id(u64),
    Url(String),
}

/// One parsed row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub line: usize,
    /// The tenant's id (all digits) or name.
    pub tenant: String,
    pub site: SiteRef,
}

/// One bad row: its line and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRow {
    pub line: usize,
    pub problem: String,
}

fn is_header(tenant: &str, site: &str) -> bool {
    matches!(tenant, "tenant" | "tenant_id" | "tenant_name")
        && matches!(site, "site" | "site_id" | "url")
}

/// Parses a whole file.
pub fn parse(text: &str) -> (Vec<Row>, Vec<BadRow>) {
    let mut rows = Vec::new();
    let mut bad = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let Some((tenant, site)) = l.split_once(',') else {
            bad.push(BadRow {
                line,
                problem: "expected two fields: tenant,site (a site id or URL)".into(),
            });
            continue;
        };
        let (tenant, site) = (
            tenant.trim().trim_matches('"'),
            site.trim().trim_matches('"'),
        );
        if is_header(tenant, site) {
            continue;
        }
        let tenant_ok = tenant.bytes().all(|b| b.is_ascii_digit()) && !tenant.is_empty()
            || tenant_name_problem(tenant).is_none();
        if !tenant_ok {
            bad.push(BadRow {
                line,
                problem: format!("tenant {tenant:?} is neither a tenant id nor a tenant name"),
            });
            continue;
        }
        let site = if let Ok(id) = site.parse::<u64>() {
            SiteRef::Id(id)
        } else if site.starts_with("http://") || site.starts_with("https://") {
            SiteRef::Url(site.to_owned())
        } else {
            bad.push(BadRow {
                line,
                problem: format!("site {site:?} is neither a site id nor an http(s) URL"),
            });
            continue;
        };
        rows.push(Row {
            line,
            tenant: tenant.to_owned(),
            site,
        });
    }
    (rows, bad)
}

/// What an import will do, once every row resolved.
#[derive(Debug, Default)]
pub struct Plan {
    /// Tenants to create first (`--create`), by name.
    pub create: Vec<String>,
    /// (tenant reference, site id) for every site a row names.
    pub pairs: Vec<(String, u64)>,
}

/// Resolves rows against the store: unknown tenants (unless `create` and a name), unknown
/// site ids and URLs no site has are bad rows, and so is a site two rows give to different
/// tenants.
pub async fn plan(store: &Store, rows: &[Row], create: bool) -> Result<(Plan, Vec<BadRow>)> {
    let mut plan = Plan::default();
    let mut bad = Vec::new();
    let mut known: HashMap<String, bool> = HashMap::new();
    let ids: Vec<u64> = rows
        .iter()
        .filter_map(|r| match r.site {
            SiteRef::Id(id) => Some(id),
            SiteRef::Url(_) => None,
        })
        .collect();
    let existing: std::collections::HashSet<u64> =
        store.existing_sites(&ids).await?.into_iter().collect();
    let mut owner_of: HashMap<u64, (String, usize)> = HashMap::new();
    for r in rows {
        let exists = match known.get(&r.tenant) {
            Some(e) => *e,
            None => {
                let e = store.find_tenant(&r.tenant).await?.is_some();
                known.insert(r.tenant.clone(), e);
                e
            }
        };
        if !exists {
            let is_name = !r.tenant.bytes().all(|b| b.is_ascii_digit());
            if create && is_name {
                if !plan.create.contains(&r.tenant) {
                    plan.create.push(r.tenant.clone());
                }
            } else {
                bad.push(BadRow {
                    line: r.line,
                    problem: format!(
                        "no tenant {:?}{}",
                        r.tenant,
                        if is_name {
                            " (create it first, or pass --create)"
                        } else {
                            ""
                        }
                    ),
                });
                continue;
            }
        }
        let sites = match &r.site {
            SiteRef::Id(id) if existing.contains(id) => vec![*id],
            SiteRef::Id(id) => {
                bad.push(BadRow {
                    line: r.line,
                    problem: format!("no site {id}"),
                });
                continue;
            }
            SiteRef::Url(url) => {
                let found = store.sites_with_url(url).await?;
                if found.is_empty() {
                    bad.push(BadRow {
                        line: r.line,
                        problem: format!("no site has the URL {url}"),
                    });
                    continue;
                }
                found
            }
        };
        for site in sites {
            match owner_of.get(&site) {
                Some((t, line)) if *t != r.tenant => bad.push(BadRow {
                    line: r.line,
                    problem: format!("site {site} is given to tenant {t:?} on line {line} too"),
                }),
                Some(_) => {}
                None => {
                    owner_of.insert(site, (r.tenant.clone(), r.line));
                    plan.pairs.push((r.tenant.clone(), site));
                }
            }
        }
    }
    Ok((plan, bad))
}

impl Plan {
    /// Creates the tenants to create, then moves every site in one transaction. Returns
    /// (tenants created, sites moved).
    pub async fn apply(&self, store: &Store) -> Result<(usize, u64)> {
        for name in &self.create {
            store.create_tenant(name).await?;
        }
        let mut ids: HashMap<&str, u64> = HashMap::new();
        let mut pairs = Vec::with_capacity(self.pairs.len());
        for (tenant, site) in &self.pairs {
            let id = match ids.get(tenant.as_str()) {
                Some(id) => *id,
                None => {
                    let t = store
                        .find_tenant(tenant)
                        .await?
                        .ok_or_else(|| anyhow::anyhow!("tenant {tenant:?} disappeared"))?;
                    ids.insert(tenant, t.id);
                    t.id
                }
            };
            pairs.push((id, *site));
        }
        let moved = store.assign_sites(&pairs).await?;
        Ok((self.create.len(), moved))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_headers_comments_and_bad_lines() {
        let text = "tenant_id,site_id\n# a comment\nacme,12\n\n2, https://a.example/x?y=1,2\n\
                    acme\nbad name,3\nacme,ftp://x\n";
        let (rows, bad) = parse(text);
        assert_eq!(
            rows,
            vec![
                Row {
                    line: 3,
                    tenant: "acme".into(),
                    site: SiteRef::Id(12)
                },
                Row {
                    line: 5,
                    tenant: "2".into(),
                    site: SiteRef::Url("https://a.example/x?y=1,2".into())
                },
            ]
        );
        let lines: Vec<usize> = bad.iter().map(|b| b.line).collect();
        assert_eq!(lines, vec![6, 7, 8]);
    }
}

/// `jetmon tenants …`: the customers of this deployment (docs/tenants.md).
#[derive(clap::Subcommand, Debug)]
pub enum TenantsCmd {
    /// Create a tenant (names: letters, digits, '-', '_', '.'; not all digits).
    Create { name: String },
    /// One line per tenant: id, active or deactivated, sites, name.
    List,
    /// Rename a tenant (by id or name).
    Rename { tenant: String, new_name: String },
    /// Deactivate a tenant: its keys are refused (403 tenant_inactive) and its checks pause
    /// (Paused, not downtime). Nothing is deleted; `activate` undoes it.
    Deactivate { tenant: String },
    /// Reactivate a deactivated tenant: its keys work again, its checks resume.
    Activate { tenant: String },
    /// Move sites to tenants from a CSV file of `tenant,site` rows: tenant by id or name, site
    /// by id or by URL (every site with that main URL). Bad rows are named as FILE:LINE and
    /// nothing is written unless every row is good; importing twice changes nothing the second
    /// time; nothing is deleted.
    Import {
        /// The file to read ("-" = standard input).
        file: std::path::PathBuf,
        /// Create the tenants the file names that do not exist yet.
        #[arg(long)]
        create: bool,
    },
}

/// Runs one `jetmon tenants` command.
pub async fn run(store: &Store, cmd: TenantsCmd) -> Result<()> {
    let find = |reference: String| async move {
        store
            .find_tenant(&reference)
            .await?
            .ok_or_else(|| anyhow::anyhow!("no tenant {reference:?} (see `jetmon tenants list`)"))
    };
    match cmd {
        TenantsCmd::Create { name } => {
            let t = store.create_tenant(&name).await?;
            println!("{}", t.id);
            eprintln!(
                "jetmon: tenant {} ({}) created; make it a key with `jetmon keys create --tenant {} --name NAME --scope write`",
                t.id, t.name, t.name
            );
        }
        TenantsCmd::List => {
            let counts = store.sites_per_tenant().await?;
            println!("{:>6}  {:<11}  {:>7}  name", "id", "state", "sites");
            for t in store.tenants().await? {
                println!(
                    "{:>6}  {:<11}  {:>7}  {}",
                    t.id,
                    if t.active { "active" } else { "deactivated" },
                    counts.get(&t.id).copied().unwrap_or(0),
                    t.name
                );
            }
        }
        TenantsCmd::Rename { tenant, new_name } => {
            let t = find(tenant).await?;
            store.rename_tenant(t.id, &new_name).await?;
            eprintln!(
                "jetmon: tenant {} renamed {:?} → {new_name:?}",
                t.id, t.name
            );
        }
        TenantsCmd::Deactivate { tenant } => {
            let t = find(tenant).await?;
            store.set_tenant_active(t.id, false).await?;
            eprintln!(
                "jetmon: tenant {} ({}) deactivated: its keys are refused and its checks paused",
                t.id, t.name
            );
        }
        TenantsCmd::Activate { tenant } => {
            let t = find(tenant).await?;
            store.set_tenant_active(t.id, true).await?;
            eprintln!("jetmon: tenant {} ({}) active", t.id, t.name);
        }
        TenantsCmd::Import { file, create } => import(store, &file, create).await?,
    }
    Ok(())
}

async fn import(store: &Store, file: &std::path::Path, create: bool) -> Result<()> {
    use anyhow::Context;
    let text = if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading standard input")?
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
    };
    let (rows, mut bad) = parse(&text);
    let (plan, unresolved) = plan(store, &rows, create).await?;
    bad.extend(unresolved);
    bad.sort_by_key(|b| b.line);
    for b in &bad {
        eprintln!("{}:{}: {}", file.display(), b.line, b.problem);
    }
    if !bad.is_empty() {
        anyhow::bail!(
            "{} bad row(s) (listed above): nothing was imported; fix them and run it again",
            bad.len()
        );
    }
    let (created, moved) = plan.apply(store).await?;
    println!(
        "{} site(s) named, {moved} moved to another tenant, {created} tenant(s) created",
        plan.pairs.len()
    );
    Ok(())
}
