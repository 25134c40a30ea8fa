//! A bounded id -> entry table with a free list (sockets and files).

/// A bounded id -> entry table with a free list.
#[derive(Debug)]
pub(super) struct Table<T> {
    pub(super) entries: Vec<Option<T>>,
    free: Vec<u32>,
    max: u32,
}

impl<T> Table<T> {
    pub(super) fn new(max: u32) -> Self {
        Table {
            entries: Vec::new(),
            free: Vec::new(),
            max,
        }
    }

    pub(super) fn insert(&mut self, v: T) -> Option<u32> {
        if let Some(i) = self.free.pop()
            && let Some(e) = self.entries.get_mut(i as usize)
        {
            *e = Some(v);
            return Some(i);
        }
        let i = u32::try_from(self.entries.len()).ok()?;
        if i >= self.max {
            return None;
        }
        self.entries.push(Some(v));
        Some(i)
    }

    pub(super) fn get(&self, i: u32) -> Option<&T> {
        self.entries.get(i as usize)?.as_ref()
    }

    pub(super) fn get_mut(&mut self, i: u32) -> Option<&mut T> {
        self.entries.get_mut(i as usize)?.as_mut()
    }

    pub(super) fn remove(&mut self, i: u32) -> Option<T> {
        let v = self.entries.get_mut(i as usize)?.take()?;
        self.free.push(i);
        Some(v)
    }

    pub(super) fn drain(&mut self) -> impl Iterator<Item = T> + '_ {
        self.free.clear();
        self.entries.drain(..).flatten()
    }
}
