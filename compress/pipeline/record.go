package pipeline

import (
	"bytes"
	"encoding/binary"
	"encoding/gob"
	"errors"
	"fmt"
	"hash/crc32"

	"pocketllm-native/compress/pllm"
	"pocketllm-native/compress/pocketllm"
	"pocketllm-native/compress/vq"
)

// A group record is one trained group, self-checking (FORMAT.md, "Work
// folders and part files"):
//
//	magic "PLLMGRP1" | job fingerprint [32] | u32 group index | u32 group count
//	| u64 payload length | payload | u32 CRC-32C of everything before it
//
// The payload is the group at full precision as training left it (gob):
// tuning starts from the float32 masters, so a record of the fp16-encoded
// container group would not give the same bytes.
var recordMagic = [8]byte{'P', 'L', 'L', 'M', 'G', 'R', 'P', '1'}

const recordHeaderSize = 8 + 32 + 4 + 4 + 8

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// recordPayload is a trained group without its original weights (which
// are read again from the input).
type recordPayload struct {
	Name      string
	PocketLLM *pocketllm.Result
	VQ        *vq.Result
	RTN       *pllm.Group
	NMSE      []float64
}

// errRecord marks a record that is damaged or belongs to another job: it
// is retrained, never used.
var errRecord = errors.New("damaged group record")

func encodeRecord(job [32]byte, index, count int, t *trained) ([]byte, error) {
	p := recordPayload{Name: t.g.Name, PocketLLM: t.pl, VQ: t.vq, RTN: t.rtn}
	if t.pl == nil && t.vq == nil {
		p.NMSE = t.nmse // pocketllm and vq results hold their own
	}
	var body bytes.Buffer
	if err := gob.NewEncoder(&body).Encode(p); err != nil {
		return nil, fmt.Errorf("group %s: encoding its record: %v", t.g.Name, err)
	}
	out := make([]byte, 0, recordHeaderSize+body.Len()+4)
	out = append(out, recordMagic[:]...)
	out = append(out, job[:]...)
	out = binary.LittleEndian.AppendUint32(out, uint32(index))
	out = binary.LittleEndian.AppendUint32(out, uint32(count))
	out = binary.LittleEndian.AppendUint64(out, uint64(body.Len()))
	out = append(out, body.Bytes()...)
	return binary.LittleEndian.AppendUint32(out, crc32.Checksum(out, castagnoli)), nil
}

// checkRecord checks a record's framing, CRC and header against the job
// and the group it should hold, without decoding its payload.
func checkRecord(b []byte, job [32]byte, index, count int) error {
	if len(b) < recordHeaderSize+4 || !bytes.Equal(b[:8], recordMagic[:]) {
		return fmt.Errorf("%w: not a group record", errRecord)
	}
	n := binary.LittleEndian.Uint64(b[48:])
	if n != uint64(len(b)-recordHeaderSize-4) {
		return fmt.Errorf("%w: %d bytes where its header says %d (cut short?)", errRecord, len(b), n+recordHeaderSize+4)
	}
	if crc32.Checksum(b[:len(b)-4], castagnoli) != binary.LittleEndian.Uint32(b[len(b)-4:]) {
		return fmt.Errorf("%w: CRC-32C mismatch", errRecord)
	}
	if !bytes.Equal(b[8:40], job[:]) {
		return fmt.Errorf("%w: made by another job (fingerprint differs)", errRecord)
	}
	if i, c := int(binary.LittleEndian.Uint32(b[40:])), int(binary.LittleEndian.Uint32(b[44:])); i != index || c != count {
		return fmt.Errorf("%w: holds group %d of %d, not %d of %d", errRecord, i+1, c, index+1, count)
	}
	return nil
}

// decodeRecord checks a record against the job and the group it should
// hold and restores the trained group (without its weights).
func decodeRecord(b []byte, job [32]byte, g plannedGroup, index, count int) (*trained, error) {
	if err := checkRecord(b, job, index, count); err != nil {
		return nil, err
	}
	var p recordPayload
	if err := gob.NewDecoder(bytes.NewReader(b[recordHeaderSize : len(b)-4])).Decode(&p); err != nil {
		return nil, fmt.Errorf("%w: %v", errRecord, err)
	}
	if p.Name != g.Name {
		return nil, fmt.Errorf("%w: holds group %s, not %s", errRecord, p.Name, g.Name)
	}
	t := &trained{g: g, pl: p.PocketLLM, vq: p.VQ, rtn: p.RTN, nmse: p.NMSE}
	// Tuning refreshes t.nmse in place, which training aliased to the
	// result's own (what the container writes): keep that aliasing.
	switch {
	case t.pl != nil && g.method == MethodPocketLLM:
		t.nmse = t.pl.NMSE
	case t.vq != nil && g.method == MethodVQ:
		t.nmse = t.vq.NMSE
	case t.rtn != nil && g.method == MethodRTN:
	default:
		return nil, fmt.Errorf("%w: its method is not the planned %s", errRecord, g.method)
	}
	if len(t.nmse) != len(g.Members) {
		return nil, fmt.Errorf("%w: %d errors for %d members", errRecord, len(t.nmse), len(g.Members))
	}
	return t, nil
}
