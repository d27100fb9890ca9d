package llama

import (
	"fmt"
	"math"
)

// LogSoftmax returns the log-probabilities of logits [T, vocab], row by
// row, through the log-sum-exp (so no row overflows or underflows to all
// zeros). It turns a teacher's logits into KL's input.
func LogSoftmax[F Float](logits []F, vocab int) ([]F, error) {
	if vocab <= 0 || len(logits) == 0 || len(logits)%vocab != 0 {
		return nil, fmt.Errorf("llama: %d logits are not a positive multiple of the vocabulary size %d", len(logits), vocab)
	}
	out := make([]F, len(logits))
	for t := 0; t < len(logits); t += vocab {
		row := logits[t : t+vocab]
		lse := logSumExp(row)
		for i, x := range row {
			out[t+i] = F(float64(x) - lse)
		}
	}
	return out, nil
}

// logSumExp is log(sum_i exp(x_i)) in float64, shifted by the maximum.
func logSumExp[F Float](x []F) float64 {
	m := math.Inf(-1)
	for _, v := range x {
		m = max(m, float64(v))
	}
	if math.IsInf(m, 0) {
		return m
	}
	var sum float64
	for _, v := range x {
		sum += math.Exp(float64(v) - m)
	}
	return m + math.Log(sum)
}

// KL returns the mean over the T positions of KL(p_teacher || p_student),
// where teacherLogProbs [T, vocab] are the teacher's log-probabilities
// (see LogSoftmax; -Inf where a probability is 0) and studentLogits
// [T, vocab] are the student's logits. When grad is not nil (len T*vocab)
// it is set to the gradient with respect to the student's logits,
// (softmax(student) - p_teacher) / T. The sums run in float64.
func KL[F Float](teacherLogProbs, studentLogits []F, vocab int, grad []F) (float64, error) {
	n := len(studentLogits)
	switch {
	case vocab <= 0 || n == 0 || n%vocab != 0:
		return 0, fmt.Errorf("llama: %d student logits are not a positive multiple of the vocabulary size %d", n, vocab)
	case len(teacherLogProbs) != n:
		return 0, fmt.Errorf("llama: %d teacher log-probabilities for %d student logits", len(teacherLogProbs), n)
	case grad != nil && len(grad) != n:
		return 0, fmt.Errorf("llama: KL gradient has %d values, want %d", len(grad), n)
	}
	T := n / vocab
	var total float64
	for t := 0; t < n; t += vocab {
		s, lt := studentLogits[t:t+vocab], teacherLogProbs[t:t+vocab]
		lse := logSumExp(s)
		var kl float64
		for i, l := range lt {
			if math.IsInf(float64(l), -1) {
				continue // 0 log 0 = 0
			}
			kl += math.Exp(float64(l)) * (float64(l) - (float64(s[i]) - lse))
		}
		total += kl
		if grad != nil {
			for i, x := range s {
				grad[t+i] = F((math.Exp(float64(x)-lse) - math.Exp(float64(lt[i]))) / float64(T))
			}
		}
	}
	return total / float64(T), nil
}

// SquaredError returns the mean over all values of (got - want)^2, the
// objective of block-wise fine-tuning (a compressed layer's output against
// the original's on the same input). When grad is not nil (len(got)) it
// is set to the gradient with respect to got, 2 (got - want) / len(got).
func SquaredError[F Float](got, want, grad []F) (float64, error) {
	switch {
	case len(got) == 0 || len(got) != len(want):
		return 0, fmt.Errorf("llama: squared error of %d values against %d", len(got), len(want))
	case grad != nil && len(grad) != len(got):
		return 0, fmt.Errorf("llama: squared-error gradient has %d values, want %d", len(grad), len(got))
	}
	n := float64(len(got))
	var sum float64
	for i, g := range got {
		d := float64(g) - float64(want[i])
		sum += d * d
		if grad != nil {
			grad[i] = F(2 * d / n)
		}
	}
	return sum / n, nil
}
