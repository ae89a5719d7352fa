package bench

import (
	"context"
	"fmt"
	"testing"

	"github.com/whiskercam/whisker/learner"
)

// BenchmarkTrainPets trains each kind of head on the 2,000 real cat and
// dog vectors (2 classes, 1280 dimensions).
func BenchmarkTrainPets(b *testing.B) {
	d := testPets(b, 1000)
	for _, kind := range []string{learner.KindLinear, learner.KindHidden} {
		b.Run(kind, func(b *testing.B) {
			iters := 0
			for range b.N {
				h, err := learner.Train(d, "pets", learner.TrainConfig{Kind: kind, C: 1}, nil)
				if err != nil {
					b.Fatal(err)
				}
				iters = h.Iters
			}
			b.ReportMetric(float64(iters), "iterations")
		})
	}
}

// BenchmarkFewShot times one few-shot fit per method and reports the mean
// accuracy over 20 splits (as `whisker bench learner` does, without
// scikit-learn).
func BenchmarkFewShot(b *testing.B) {
	d := testPets(b, 1000)
	for _, shots := range []int{5, 50} {
		splits := MakeSplits(d.Labels, []int{shots}, 20, 1)
		for _, m := range Methods() {
			b.Run(fmt.Sprintf("shots=%d/%s", shots, m), func(b *testing.B) {
				var acc float64
				for range b.N {
					out, err := RunMethod(context.Background(), d, splits, m, FewShotConfig{Train: learner.TrainConfig{C: 1}})
					if err != nil {
						b.Fatal(err)
					}
					acc = 0
					for _, o := range out {
						acc += o.Accuracy / float64(len(out))
					}
				}
				b.ReportMetric(acc, "accuracy")
				b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N*len(splits)), "ms/split")
			})
		}
	}
}
