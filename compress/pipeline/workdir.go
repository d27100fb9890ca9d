package pipeline

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"pocketllm-native/internal/atomicfile"
	"pocketllm-native/internal/faultpoint"
)

// workDir is a folder of group records of one job (FORMAT.md, "Work
// folders and part files"): job.json says which job, group-NNNNN.rec holds
// group NNNNN (from 0).
type workDir struct {
	path   string
	rec    jobRecord
	reused int // records found valid when the run started
	// lockName is this run's lock file in the folder, one per shard since
	// shards may share a folder; lock holds it while the run lives, from
	// when the folder exists (hold).
	lockName string
	lock     *os.File
}

const jobFile = "job.json"

func recordName(i int) string { return fmt.Sprintf("group-%05d.rec", i) }

// openWorkDir reopens the work folder of the job rec, if there is one. A
// folder of another job is an error naming what differs; fresh discards
// it. Nothing is created until the first group is finished (store), so a
// run that stops before that leaves nothing behind.
func openWorkDir(path string, rec jobRecord, fresh bool, lockName string) (_ *workDir, err error) {
	w := &workDir{path: path, rec: rec, lockName: lockName}
	defer func() {
		if err != nil {
			w.release()
		}
	}()
	if fresh {
		// Never under a live run of the same job.
		if err := w.holdIfThere(); err != nil {
			return nil, err
		}
		if err := w.clear(); err != nil {
			return nil, err
		}
	}
	data, err := os.ReadFile(filepath.Join(path, jobFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if stray := w.records(); len(stray) > 0 {
			// Records without the job that made them cannot be trusted.
			return nil, fmt.Errorf("work folder %s: %d group records but no %s; pass --fresh to discard them", path, len(stray), jobFile)
		}
		return w, nil
	case err != nil:
		return nil, fmt.Errorf("work folder %s: %v", path, err)
	}
	var was jobRecord
	if err := json.Unmarshal(data, &was); err != nil {
		return nil, fmt.Errorf("work folder %s: %s is damaged (%v); pass --fresh to discard the folder", path, jobFile, err)
	}
	if why := was.mismatch(rec); why != "" {
		return nil, fmt.Errorf("work folder %s holds another job's groups: %s; pass --fresh to discard them, or give another --work-dir", path, why)
	}
	if err := w.holdIfThere(); err != nil {
		return nil, err
	}
	return w, nil
}

// hold takes this run's lock in the folder (creating its lock file), so a
// second live run of the same job, or shard, is refused at once instead of
// training the same groups again. The lock goes with the process however
// it ends; the file stays until the folder is removed.
func (w *workDir) hold() error {
	if w.lock != nil {
		return nil
	}
	f, err := os.OpenFile(filepath.Join(w.path, w.lockName), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("work folder %s: %v", w.path, err)
	}
	if err := atomicfile.TryLock(f); err != nil {
		f.Close()
		return fmt.Errorf("work folder %s is in use by another live run of this job (it holds %s); wait for it to end, or give another --work-dir", w.path, w.lockName)
	}
	w.lock = f
	return nil
}

// holdIfThere holds the lock when the folder exists; otherwise create will.
func (w *workDir) holdIfThere() error {
	if fi, err := os.Stat(w.path); err != nil || !fi.IsDir() {
		return nil
	}
	return w.hold()
}

// release lets the lock go (the run is ending).
func (w *workDir) release() {
	if w.lock != nil {
		w.lock.Close()
		w.lock = nil
	}
}

// create makes the folder and its job.json.
func (w *workDir) create() error {
	if err := os.MkdirAll(w.path, 0o755); err != nil {
		return fmt.Errorf("work folder %s: %v", w.path, err)
	}
	if err := w.hold(); err != nil {
		return err
	}
	js, err := json.MarshalIndent(w.rec, "", "  ")
	if err != nil {
		return fmt.Errorf("work folder %s: %v", w.path, err)
	}
	// Replacing: another shard of the same job may have just written the
	// same bytes; another job's file was refused when the folder was opened.
	if err := atomicfile.Write(filepath.Join(w.path, jobFile), append(js, '\n'), true); err != nil {
		return fmt.Errorf("work folder %s: %v", w.path, err)
	}
	return nil
}

// records lists the record files present.
func (w *workDir) records() []string {
	names, _ := filepath.Glob(filepath.Join(w.path, "group-*.rec"))
	return names
}

// scanWorkDir checks every record present once (its CRC, not yet its
// payload), so that the run can say how many groups it reuses; damaged
// records are reported and removed.
func (j *job) scanWorkDir() {
	for i, g := range j.planned {
		ok, err := j.work.check(i, g, j.id, len(j.planned))
		switch {
		case err != nil:
			j.o.emit(Event{Kind: "notice", Stage: err.Error() + "; the group will be trained again"})
		case ok:
			j.work.reused++
		}
	}
	if j.work.reused > 0 {
		j.o.emit(Event{Kind: "notice", Stage: fmt.Sprintf("work folder %s: reusing %d of %d groups trained by an earlier run", j.work.path, j.work.reused, len(j.planned))})
	}
}

// check says whether group i has a record that checks (framing, CRC,
// header), without decoding it; one that does not is removed and reported.
func (w *workDir) check(i int, g plannedGroup, job [32]byte, count int) (bool, error) {
	p := filepath.Join(w.path, recordName(i))
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err == nil {
		if err = checkRecord(b, job, i, count); err == nil {
			return true, nil
		}
	}
	os.Remove(p)
	return false, fmt.Errorf("work folder %s: group %s: %s: %v", w.path, g.Name, recordName(i), err)
}

// load reads group i's record: nil without one, an error (after removing
// it) for one that is damaged or not this job's.
func (w *workDir) load(i int, g plannedGroup, job [32]byte, count int) (*trained, error) {
	p := filepath.Join(w.path, recordName(i))
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err == nil {
		var t *trained
		if t, err = decodeRecord(b, job, g, i, count); err == nil {
			return t, nil
		}
	}
	os.Remove(p)
	return nil, fmt.Errorf("work folder %s: group %s: %s: %v", w.path, g.Name, recordName(i), err)
}

// store writes group i's record atomically: a run killed while writing
// leaves no record, never a partial one.
func (w *workDir) store(i, count int, job [32]byte, t *trained) error {
	b, err := encodeRecord(job, i, count, t)
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(w.path, jobFile)); err != nil {
		// First record, or another shard sharing the folder tidied it away.
		if err := w.create(); err != nil {
			return err
		}
	}
	p := filepath.Join(w.path, recordName(i))
	faultpoint.Hit("record-before")
	f, err := atomicfile.Create(p, true)
	if err != nil {
		return fmt.Errorf("work folder %s: %v", w.path, err)
	}
	half := len(b) / 2
	if _, err := f.Write(b[:half]); err != nil {
		f.Abort()
		return fmt.Errorf("%s: %v", p, bare(err))
	}
	faultpoint.Hit("record-during")
	if _, err := f.Write(b[half:]); err != nil {
		f.Abort()
		return fmt.Errorf("%s: %v", p, bare(err))
	}
	if err := f.Commit(); err != nil {
		return fmt.Errorf("%s: %v", p, err)
	}
	faultpoint.Hit("record-after")
	return nil
}

// removeGroups deletes the records of groups (a shard's, now in its part
// file), then the folder itself once no record is left: shards sharing a
// folder leave each other's records alone.
func (w *workDir) removeGroups(groups []int) error {
	for _, i := range groups {
		if err := os.Remove(filepath.Join(w.path, recordName(i))); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("work folder %s: %v", w.path, err)
		}
	}
	if len(w.records()) > 0 {
		return w.dropLock()
	}
	return w.remove()
}

// remove deletes what the job put in the folder, this run's lock file
// included, and the folder when that leaves it empty: a --work-dir the
// user keeps other files in, or another shard still uses, stays.
func (w *workDir) remove() error {
	if err := w.clear(); err != nil {
		return err
	}
	if err := w.dropLock(); err != nil {
		return err
	}
	if err := os.Remove(w.path); err != nil && !errors.Is(err, fs.ErrNotExist) && !isNotEmpty(err) {
		return fmt.Errorf("work folder %s: %v", w.path, err)
	}
	return nil
}

// dropLock deletes this run's lock file, once its work there is done, and
// lets the lock go.
func (w *workDir) dropLock() error {
	if w.lock == nil {
		return nil
	}
	defer w.release()
	if err := os.Remove(filepath.Join(w.path, w.lockName)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("work folder %s: %v", w.path, err)
	}
	return nil
}

// clear deletes the job's records and its job.json.
func (w *workDir) clear() error {
	for _, p := range append(w.records(), filepath.Join(w.path, jobFile)) {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("work folder %s: %v", w.path, err)
		}
	}
	return nil
}

func isNotEmpty(err error) bool {
	return errors.Is(err, syscall.ENOTEMPTY) || errors.Is(err, fs.ErrExist)
}

// bare drops the path of an error about a file being written, which may be
// a temporary name ("(unnamed)"), so that the message names the record.
func bare(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Op, pe.Err)
	}
	return err
}
