//! Remote functions, registered by name with typed arguments and results.

use std::collections::HashMap;
use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{panic_text, Error};
use crate::vm::message::{decode, encode, RemoteCall};
use crate::vm::{RemoteErrorKind, RemoteFailure};

/// A function that may run on another worker, known there by its name.
///
/// Rust cannot send closures, so remote work is a plain `fn(A) -> R` with a name; the workers
/// find it in their [`Registry`]. Arguments and results cross as postcard bytes.
///
/// ```
/// static DOUBLE: cos::RemoteFn<u32, u32> = cos::RemoteFn::new("double", |x| x * 2);
/// assert_eq!(DOUBLE.call(21), 42);
/// assert_eq!(DOUBLE.name(), "double");
/// ```
pub struct RemoteFn<A, R> {
    name: &'static str,
    func: fn(A) -> R,
}

impl<A, R> RemoteFn<A, R> {
    /// A remote function named `name` that runs `func`.
    ///
    /// ```
    /// static F: cos::RemoteFn<(), u8> = cos::RemoteFn::new("f", |()| 1);
    /// ```
    pub const fn new(name: &'static str, func: fn(A) -> R) -> Self {
        RemoteFn { name, func }
    }

    /// The registered name.
    ///
    /// ```
    /// static F: cos::RemoteFn<(), ()> = cos::RemoteFn::new("noop", |()| ());
    /// assert_eq!(F.name(), "noop");
    /// ```
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Calls the function here.
    ///
    /// ```
    /// static NEG: cos::RemoteFn<i8, i8> = cos::RemoteFn::new("neg", |x| -x);
    /// assert_eq!(NEG.call(3), -3);
    /// ```
    pub fn call(&self, args: A) -> R {
        (self.func)(args)
    }

    /// The fingerprint of the function's argument and result types: a 64-bit FNV-1a hash of
    /// their [`std::any::type_name`]s, the same in every process of one build (and in every
    /// thread), so that the spawner and its workers can tell whether the function a call names
    /// has the types the caller encoded for. Functions of the same types have the same
    /// signature; only the name tells them apart.
    ///
    /// ```
    /// static A: cos::RemoteFn<u32, u32> = cos::RemoteFn::new("a", |x| x);
    /// static B: cos::RemoteFn<u32, u32> = cos::RemoteFn::new("b", |x| x + 1);
    /// static C: cos::RemoteFn<u32, i32> = cos::RemoteFn::new("a", |x| x as i32);
    /// assert_eq!(A.signature(), B.signature());
    /// assert_ne!(A.signature(), C.signature());
    /// ```
    pub fn signature(&self) -> u64 {
        signature_of::<A, R>()
    }

    pub(crate) fn func(&self) -> fn(A) -> R {
        self.func
    }
}

/// The signature of a function from `A` to `R`: FNV-1a over the two type names, with a byte
/// that no UTF-8 text holds between them (a fixed hash, unlike std's randomly seeded one).
fn signature_of<A, R>() -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0100_0000_01b3;
    let names = std::any::type_name::<A>().bytes().chain([0xff]).chain(std::any::type_name::<R>().bytes());
    names.fold(OFFSET, |h, b| (h ^ u64::from(b)).wrapping_mul(PRIME))
}

impl<A, R> fmt::Debug for RemoteFn<A, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RemoteFn({:?})", self.name)
    }
}

/// A registered function: decodes the arguments, runs it and, when the second argument (the
/// call's `send_back`) says so, encodes its value.
type Entry = Box<dyn Fn(&[u8], bool) -> Result<Vec<u8>, RemoteFailure> + Send + Sync>;

/// The remote functions a worker may run, by name. Nothing else runs there.
///
/// ```
/// static SQUARE: cos::RemoteFn<u64, u64> = cos::RemoteFn::new("square", |x| x * x);
/// let reg = cos::Registry::new().with(&SQUARE);
/// let out = reg.run(&cos::RemoteCall::new("square", &7u64).unwrap()).unwrap();
/// assert_eq!(out, postcard::to_stdvec(&49u64).unwrap());
/// ```
#[derive(Clone, Default)]
pub struct Registry {
    /// Each name's function, with the address of its [`RemoteFn`] (registering the same one
    /// twice is harmless; another one under a taken name is an error).
    map: HashMap<&'static str, Registered>,
}

/// A registered function and what identifies it.
#[derive(Clone)]
struct Registered {
    /// The address of its [`RemoteFn`].
    address: usize,
    /// Its [`RemoteFn::signature`].
    signature: u64,
    /// Its argument and result types, for the log.
    types: (&'static str, &'static str),
    entry: Arc<Entry>,
}

impl Registry {
    /// An empty registry.
    ///
    /// ```
    /// assert!(cos::Registry::new().names().is_empty());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `f` under its name; adding the same function again changes nothing.
    ///
    /// # Panics
    /// When another function is registered under the same name (use [`Registry::register`] to
    /// get that as an error).
    ///
    /// ```
    /// static ID: cos::RemoteFn<u8, u8> = cos::RemoteFn::new("id", |x| x);
    /// assert_eq!(cos::Registry::new().with(&ID).with(&ID).names(), vec!["id"]);
    /// ```
    pub fn with<A, R>(mut self, f: &'static RemoteFn<A, R>) -> Self
    where
        A: DeserializeOwned + 'static,
        R: Serialize + 'static,
    {
        if let Err(e) = self.register(f) {
            panic!("{e}");
        }
        self
    }

    /// Adds `f` under its name; adding the same function again changes nothing.
    ///
    /// # Errors
    /// [`Error::DuplicateFunction`] when another function is registered under that name (the
    /// registry keeps the first).
    ///
    /// ```
    /// static A: cos::RemoteFn<u8, u8> = cos::RemoteFn::new("f", |x| x);
    /// static B: cos::RemoteFn<u8, u8> = cos::RemoteFn::new("f", |x| x + 1);
    /// let mut reg = cos::Registry::new();
    /// reg.register(&A).unwrap();
    /// assert_eq!(reg.register(&B).unwrap_err(), cos::Error::DuplicateFunction("f".into()));
    /// ```
    pub fn register<A, R>(&mut self, f: &'static RemoteFn<A, R>) -> Result<&mut Self, Error>
    where
        A: DeserializeOwned + 'static,
        R: Serialize + 'static,
    {
        let address = f as *const RemoteFn<A, R> as usize;
        if let Some(known) = self.map.get(f.name) {
            return if known.address == address {
                Ok(self)
            } else {
                Err(Error::DuplicateFunction(f.name.to_string()))
            };
        }
        let func = f.func;
        let entry: Entry = Box::new(move |bytes: &[u8], send_back: bool| {
            let args: A = decode(bytes)
                .map_err(|e| RemoteFailure::new(RemoteErrorKind::BadArguments, e.to_string()))?;
            // A value not sent back is dropped here, so that a panic in its destructor is the
            // job's failure like one in the function.
            let ran = panic::catch_unwind(AssertUnwindSafe(|| {
                let r = func(args);
                if send_back {
                    Some(r)
                } else {
                    drop(r);
                    None
                }
            }));
            match ran {
                Ok(Some(r)) => {
                    encode(&r).map_err(|e| RemoteFailure::new(RemoteErrorKind::BadResult, e.to_string()))
                }
                Ok(None) => Ok(Vec::new()),
                Err(p) => Err(RemoteFailure::new(RemoteErrorKind::Panicked, panic_text(&*p))),
            }
        });
        let types = (std::any::type_name::<A>(), std::any::type_name::<R>());
        let registered = Registered { address, signature: f.signature(), types, entry: Arc::new(entry) };
        self.map.insert(f.name, registered);
        Ok(self)
    }

    /// The registered names, sorted.
    ///
    /// ```
    /// static A: cos::RemoteFn<(), ()> = cos::RemoteFn::new("a", |()| ());
    /// static B: cos::RemoteFn<(), ()> = cos::RemoteFn::new("b", |()| ());
    /// assert_eq!(cos::Registry::new().with(&B).with(&A).names(), vec!["a", "b"]);
    /// ```
    pub fn names(&self) -> Vec<&'static str> {
        let mut v: Vec<_> = self.map.keys().copied().collect();
        v.sort_unstable();
        v
    }

    /// Runs a call: checks its [signature](RemoteCall::signature), decodes its arguments, runs
    /// the function (catching a panic) and encodes the result; for a call whose
    /// [`send_back`](RemoteCall::send_back) is `false`, drops the result unencoded and gives
    /// empty bytes.
    ///
    /// # Errors
    /// An unknown name ([`RemoteErrorKind::UnknownFunction`]), a signature that is not the
    /// registered function's ([`RemoteErrorKind::SignatureMismatch`], with the name as its
    /// message; checked before anything is decoded), arguments that do not decode
    /// ([`RemoteErrorKind::BadArguments`]), or a panic in the function
    /// ([`RemoteErrorKind::Panicked`]).
    ///
    /// ```
    /// let reg = cos::Registry::new();
    /// let err = reg.run(&cos::RemoteCall::new("nope", &()).unwrap()).unwrap_err();
    /// assert_eq!(err.kind, cos::RemoteErrorKind::UnknownFunction);
    /// assert_eq!(err.message, "nope");
    ///
    /// static ONE: cos::RemoteFn<(), u64> = cos::RemoteFn::new("one", |()| 1);
    /// let reg = cos::Registry::new().with(&ONE);
    /// let call = cos::RemoteCall::new("one", &()).unwrap().with_send_back(false);
    /// assert_eq!(reg.run(&call).unwrap(), Vec::<u8>::new());
    /// ```
    pub fn run(&self, call: &RemoteCall) -> Result<Vec<u8>, RemoteFailure> {
        let Some(f) = self.map.get(&*call.function) else {
            return Err(RemoteFailure::new(RemoteErrorKind::UnknownFunction, call.function.to_string()));
        };
        match call.signature {
            Some(signature) if signature != f.signature => {
                let (a, r) = f.types;
                log::debug!(
                    target: "cos",
                    "call of {} refused: its signature {signature:016x} is not that of fn({a}) -> {r}",
                    call.function
                );
                Err(RemoteFailure::new(RemoteErrorKind::SignatureMismatch, call.function.to_string()))
            }
            _ => (f.entry)(&call.args, call.send_back),
        }
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry").field("names", &self.names()).finish()
    }
}
