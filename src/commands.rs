//! The jobs behind the subcommands other than `serve`: each opens what it needs in the data
//! folder, does one thing, and maps the result to an exit code.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use crate::audit::{self, Actor, AuditLog, Details, Event, EventKind, VerifyError, export::Format};
use crate::auth::Caller;
use crate::auth::api_token;
use crate::auth::links::LinkKeys;
use crate::auth::staff::{NewStaff, StaffAccounts};
use crate::config::{
    AppointmentListArgs, AppointmentsCommand, AuditCommand, AuditExportArgs, AuditTokenArgs, AuditVerifyArgs,
    KeysCommand, RoomAddArgs, RoomsCommand, StaffAddArgs, StaffCommand,
};
use crate::domain::StaffRole;
use crate::schedule::{Schedule, WindowSettings};
use crate::store::{AppointmentFilter, AuditQuery, SqliteStore, Store};

pub fn audit(command: AuditCommand) -> ExitCode {
    let result = match command {
        AuditCommand::Verify(args) => return verify(&args),
        AuditCommand::Checkpoint(args) => checkpoint(&args.data_dir),
        AuditCommand::Key(args) => key(&args.data_dir),
        AuditCommand::RotateKey(args) => rotate_key(&args.data_dir),
        AuditCommand::Export(args) => export(&args),
        AuditCommand::Token(args) => token(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&format!("{e:#}")),
    }
}

pub fn fail(message: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("gatehouse: {message}");
    ExitCode::FAILURE
}

/// Opens an existing data folder; a missing database is an error, never silently created.
fn open_existing(data_dir: &Path) -> anyhow::Result<SqliteStore> {
    let db = data_dir.join(crate::store::DATABASE_FILE);
    anyhow::ensure!(db.is_file(), "there is no Gatehouse database at {} (check --data-dir)", db.display());
    Ok(SqliteStore::open(data_dir)?)
}

fn open_log(data_dir: &Path) -> anyhow::Result<(SqliteStore, AuditLog)> {
    let store = open_existing(data_dir)?;
    let log = AuditLog::open(store.database_path(), data_dir)?;
    Ok((store, log))
}

/// Records an operator's action, then signs a checkpoint so it does not wait for the gateway.
fn record(log: &AuditLog, event: Event) -> anyhow::Result<()> {
    log.append_blocking(event)?;
    log.checkpoint_blocking()?;
    Ok(())
}

fn verify(args: &AuditVerifyArgs) -> ExitCode {
    let data_dir = &args.data.data_dir;
    let pin = match &args.pin {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => Some(text),
            Err(e) => return fail(&format!("cannot read the pinned checkpoint {}: {e}", path.display())),
        },
        None => None,
    };
    let result = match &args.export {
        Some(file) => {
            let jsonl = match std::fs::read_to_string(file) {
                Ok(text) => text,
                Err(e) => return fail(&format!("cannot read the export {}: {e}", file.display())),
            };
            let mut keys = args.keys.clone();
            // The data folder's own keys, when it is at hand, are trusted too.
            if let Ok(verifiers) = audit::keys::KeyRing::new(data_dir).verifiers() {
                keys.extend(verifiers.iter().map(audit::note::NoteVerifier::verifier_key));
            }
            AuditLog::verify_export(&jsonl, pin.as_deref().unwrap_or_default(), &keys)
        }
        None => match open_existing(data_dir) {
            Ok(store) => AuditLog::verify(store.database_path(), data_dir, pin.as_deref(), &args.keys),
            Err(e) => return fail(&e),
        },
    };
    match result {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(VerifyError::Failed(failure)) => {
            println!("FAILED ({}) at seq {}: {}", failure.class.name(), failure.seq, failure.message);
            ExitCode::from(failure.class.exit_code())
        }
        Err(e @ VerifyError::Cannot(_)) => fail(&e),
    }
}

fn checkpoint(data_dir: &Path) -> anyhow::Result<()> {
    let (_store, log) = open_log(data_dir)?;
    match log.latest_checkpoint()? {
        Some((note, _)) => {
            print!("{note}");
            Ok(())
        }
        None => anyhow::bail!("no checkpoint has been signed yet; start the gateway or wait a few seconds"),
    }
}

fn key(data_dir: &Path) -> anyhow::Result<()> {
    let (_store, log) = open_log(data_dir)?;
    println!("{}", log.verifier_key()?);
    Ok(())
}

fn rotate_key(data_dir: &Path) -> anyhow::Result<()> {
    let (_store, _) = open_log(data_dir)?;
    let signer = audit::keys::KeyRing::new(data_dir).rotate()?;
    // A fresh writer signs with the new key from here on.
    let log = AuditLog::open(&data_dir.join(crate::store::DATABASE_FILE), data_dir)?;
    let details = Details { key_id: Some(audit::Code::new(format!("{:08x}", signer.key_id()))?), ..Details::default() };
    record(&log, Event::new(EventKind::AuditKeyRotated, Actor::Operator).with_details(details))?;
    println!("New audit signing key. Verifier key:\n{}", signer.verifier_key());
    println!("Restart the gateway so that it signs with the new key; old checkpoints stay verifiable.");
    Ok(())
}

fn export(args: &AuditExportArgs) -> anyhow::Result<()> {
    let (_store, log) = open_log(&args.data.data_dir)?;
    let format = Format::parse(&args.format).ok_or_else(|| anyhow::anyhow!("unknown format {}", args.format))?;
    let bytes = log.export(Actor::Operator, None, format, &AuditQuery::default())?;
    log.checkpoint_blocking()?;
    match &args.output {
        Some(path) => std::fs::write(path, bytes)?,
        None => std::io::stdout().lock().write_all(&bytes)?,
    }
    Ok(())
}

fn token(args: &AuditTokenArgs) -> anyhow::Result<()> {
    let (store, log) = open_log(&args.data.data_dir)?;
    let issued = api_token::issue(&store, &args.label)?;
    let actor = Actor::Operator;
    let object = audit::Object { credential: Some(audit::Code::new(&issued.id)?), ..audit::Object::default() };
    record(&log, Event::new(EventKind::AuditTokenIssued, actor).with_object(object))?;
    println!("{}", issued.secret);
    eprintln!(
        "This token is shown once. Give it to its holder ({}); send it as 'Authorization: Bearer <token>'.",
        args.label
    );
    Ok(())
}

/// The operator at the gateway's console: the actor of CLI actions.
fn operator() -> Caller {
    Caller::console()
}

pub fn staff(command: StaffCommand) -> ExitCode {
    let result = match command {
        StaffCommand::Add(args) => staff_add(&args),
        StaffCommand::List(args) => staff_list(&args.data_dir),
        StaffCommand::Disable(args) => with_accounts(&args.data.data_dir, |accounts, log| {
            accounts.disable(&operator(), &args.name)?;
            log.checkpoint_blocking()?;
            println!("Disabled {} and ended its sessions.", args.name);
            Ok(())
        }),
        StaffCommand::ResetTotp(args) => with_accounts(&args.data.data_dir, |accounts, log| {
            let uri = accounts.reset_totp(&operator(), &args.name)?;
            log.checkpoint_blocking()?;
            println!("{uri}");
            eprintln!("Scan this URI (or its QR code) into the authenticator app; the old codes no longer work.");
            Ok(())
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&format!("{e:#}")),
    }
}

fn with_accounts(
    data_dir: &Path,
    job: impl FnOnce(&StaffAccounts, &AuditLog) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let store = std::sync::Arc::new(SqliteStore::open(data_dir)?);
    let log = AuditLog::open(store.database_path(), data_dir)?;
    let accounts = StaffAccounts::new(store, log.clone());
    job(&accounts, &log)
}

fn staff_add(args: &StaffAddArgs) -> anyhow::Result<()> {
    let role = StaffRole::parse(&args.role).ok_or_else(|| anyhow::anyhow!("unknown role {}", args.role))?;
    let mut password = String::new();
    std::io::stdin().read_line(&mut password)?;
    let password = password.trim_end_matches(['\n', '\r']);
    with_accounts(&args.data.data_dir, |accounts, log| {
        let display = args.display_name.as_deref().unwrap_or(&args.name);
        let new = NewStaff { username: &args.name, display_name: display, role, with_totp: args.totp };
        let (record, uri) = accounts.create(&operator(), &new, password, jiff::Timestamp::now())?;
        log.checkpoint_blocking()?;
        eprintln!("Created {} ({}).", record.username, record.role.as_str());
        if let Some(uri) = uri {
            println!("{uri}");
            eprintln!(
                "Scan this TOTP enrolment URI into the authenticator app (or type its secret); sign-in needs the code."
            );
        }
        Ok(())
    })
}

fn staff_list(data_dir: &Path) -> anyhow::Result<()> {
    let store = open_existing(data_dir)?;
    for s in crate::store::StaffStore::list_staff(&store)? {
        let state = if s.disabled { "disabled" } else { "active" };
        let totp = if s.totp_secret.is_some() { "totp" } else { "no-totp" };
        println!("{}\t{}\t{}\t{}\t{}", s.username, s.role.as_str(), state, totp, s.display_name);
    }
    Ok(())
}

pub fn keys(command: KeysCommand) -> ExitCode {
    let KeysCommand::RotateLinkKey(args) = command;
    let result = (|| -> anyhow::Result<()> {
        let (_store, log) = open_log(&args.data_dir)?;
        crate::auth::links::LinkKeys::rotate(&args.data_dir)?;
        record(&log, Event::new(EventKind::LinkKeyRotated, Actor::Operator))?;
        println!("New join-link signing key. Links issued before stay valid. Restart the gateway to sign with it.");
        Ok(())
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&format!("{e:#}")),
    }
}

/// Runs `job` with the schedule over the data folder, as the operator at the console.
fn with_schedule(data_dir: &Path, job: impl FnOnce(&Schedule, &AuditLog) -> anyhow::Result<()>) -> anyhow::Result<()> {
    let store = std::sync::Arc::new(open_existing(data_dir)?);
    let log = AuditLog::open(store.database_path(), data_dir)?;
    let links = std::sync::Arc::new(LinkKeys::load(data_dir)?);
    // Window settings matter only to joining, which the console never does.
    let schedule = Schedule::new(store, log.clone(), WindowSettings::default(), links);
    job(&schedule, &log)
}

pub fn rooms(command: RoomsCommand) -> ExitCode {
    let result = match command {
        RoomsCommand::Add(args) => room_add(&args),
        RoomsCommand::List(args) => with_schedule(&args.data_dir, |schedule, _| {
            for room in schedule.rooms(&operator(), jiff::Timestamp::now())? {
                let device = if room.device_active { "device" } else { "no-device" };
                println!("{}\t{}\t{}\t{}\t{device}", room.id, room.site, room.name, room.timezone);
            }
            Ok(())
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&format!("{e:#}")),
    }
}

fn room_add(args: &RoomAddArgs) -> anyhow::Result<()> {
    with_schedule(&args.data.data_dir, |schedule, log| {
        let now = jiff::Timestamp::now();
        let (room, credential) = schedule.enrol_room(&operator(), &args.site, &args.name, &args.time_zone, now)?;
        log.checkpoint_blocking()?;
        eprintln!("Enrolled {} at {} ({}).", room.name, room.site, room.id);
        println!("{credential}");
        eprintln!("That is the room's device credential, shown this once: type it into the room's kiosk page.");
        Ok(())
    })
}

pub fn appointments(command: AppointmentsCommand) -> ExitCode {
    let AppointmentsCommand::List(args) = command;
    match appointment_list(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&format!("{e:#}")),
    }
}

fn appointment_list(args: &AppointmentListArgs) -> anyhow::Result<()> {
    let time = |flag: &str, value: &Option<String>| -> anyhow::Result<Option<jiff::Timestamp>> {
        value
            .as_deref()
            .map(|v| {
                v.parse()
                    .map_err(|_| anyhow::anyhow!("{flag} {v:?} is not an RFC 3339 time such as 2026-11-25T09:00:00Z"))
            })
            .transpose()
    };
    let room = args
        .room
        .as_deref()
        .map(|id| id.parse().map(crate::domain::RoomId).map_err(|_| anyhow::anyhow!("--room {id:?} is not a room id")))
        .transpose()?;
    let filter = AppointmentFilter {
        room,
        from: time("--from", &args.from)?,
        to: time("--to", &args.to)?,
        status: None,
        // All of them: more than a gateway books in years.
        limit: 1_000_000,
    };
    with_schedule(&args.data.data_dir, |schedule, _| {
        let now = jiff::Timestamp::now();
        for view in schedule.list(&operator(), &filter, now)? {
            let a = &view.appointment;
            let status = view.effective_status(now);
            println!("{}\t{}\t{}\t{}\t{status}\t{}", a.id, a.start, a.end, view.room.name, a.clinician_name);
        }
        Ok(())
    })
}
