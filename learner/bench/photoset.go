package bench

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// What a photograph shows.
const (
	KindCat   = "cat"
	KindDog   = "dog"
	KindOther = "other" // an animal that is neither a cat nor a dog
	KindScene = "scene" // no animal
)

// Roles of a photograph: the open-set benchmark tests on Bench photos; the
// reference set of "other animals and scenes" that ships beside each
// backbone is made of Reference photos only, so the two never share one.
const (
	RoleBench     = "bench"
	RoleReference = "reference"
)

// Photo is one photograph (or video) of the photo set `make deps` fetches
// (scripts/deps.sh, step photos).
type Photo struct {
	// Path is relative to the deps folder.
	Path string
	Kind string
	// Individual names the animal when it plays a household's pet or a
	// stranger of the same species in the benchmark (cats and dogs).
	Individual string
	Role       string
	// Cutout is a photograph of an animal on a transparent background: it
	// is pasted onto scenes.
	Cutout bool
	// Every takes every n-th frame of a video (0: a still image).
	Every int
}

const (
	gcompris = "photos/gcompris/gcompris/src/activities/"
	opencv   = "photos/opencv/"
)

// PhotoSet lists the photographs the open-set benchmark and the reference
// set are made of. Cats and dogs are individuals: no source on the
// registries this project reaches has several distinct photographs of one
// cat or dog, so each individual is one photograph seen in many views.
func PhotoSet() []Photo {
	var ps []Photo
	pet := func(path, kind, name string) {
		ps = append(ps, Photo{Path: path, Kind: kind, Individual: name, Role: RoleBench})
	}
	pet("testdata/chelsea.png", KindCat, "Chelsea (tabby)")
	pet(gcompris+"explore_farm_animals/resource/animals/cat.webp", KindCat, "Yarn (white and grey kitten)")
	pet(gcompris+"erase/resource/kitten.webp", KindCat, "Ginger (ginger kitten)")
	pet("testdata/dog.jpg", KindDog, "Bicycle (spaniel)")
	pet("testdata/person.jpg", KindDog, "Walker (dog with a person)")
	pet(gcompris+"explore_farm_animals/resource/animals/dog.webp", KindDog, "Rex (German shepherd)")
	pet(gcompris+"babyshapes/resource/dog2/dog.webp", KindDog, "Goldie (golden retriever)")
	pet(opencv+"data/chicky_512.png", KindDog, "Chicky (Pekingese)")
	ps = append(ps, Photo{Path: "photos/tuxpaint/mammals/dogs/dog.png", Kind: KindDog, Individual: "Husky (cut out, pasted on scenes)", Role: RoleBench, Cutout: true})

	add := func(role, kind string, paths ...string) {
		for _, p := range paths {
			ps = append(ps, Photo{Path: p, Kind: kind, Role: role})
		}
	}
	for _, n := range []string{"alpaca", "bee", "butterfly", "calf", "camels", "caterpillar", "chamaeleon", "cheetah", "crab",
		"dolphin", "flying_fox", "gibbon", "giraffe", "goat", "gorilla", "gosling", "heron", "horse", "kingfisher",
		"long_nosed_monkey", "macaque", "meerkats", "northern_harrier", "nubian_ibex", "penguin", "pika", "red_panda",
		"rhinoceros", "spoonbills", "squirrel", "swans", "toucan"} {
		add(RoleBench, KindOther, gcompris+"erase/resource/"+n+".webp")
	}
	for _, n := range []string{"bison", "chameleon", "crocodile", "dragon", "giraffe", "hedgehog", "jaguar", "kangaroo", "koala",
		"lemur", "moose", "narwhal", "panda", "polar_bear", "scarlet_macaw"} {
		add(RoleBench, KindOther, gcompris+"explore_world_animals/resource/animals/"+n+".webp")
	}
	for _, n := range []string{"chicken", "cow", "duck", "horse", "owl", "pig", "sheep"} {
		add(RoleBench, KindOther, gcompris+"explore_farm_animals/resource/animals/"+n+".webp")
	}
	add(RoleBench, KindOther, opencv+"data/baboon.jpg", opencv+"data/squirrel_cls.jpg", opencv+"data/butterfly.jpg",
		opencv+"hfs/data/000.jpg", "testdata/horses.jpg", "testdata/eagle.jpg", "photos/darknet/giraffe.jpg")
	ps = append(ps, Photo{Path: "photos/imageio/cockatoo.mp4", Kind: KindOther, Role: RoleBench, Every: 20})

	for _, n := range []string{"home.jpg", "building.jpg", "leuvenA.jpg", "leuvenB.jpg", "aero1.jpg", "aero3.jpg", "board.jpg",
		"stuff.jpg", "fruits.jpg", "basketball1.png", "box_in_scene.png", "messi5.jpg", "rubberwhale1.png", "aloeL.jpg",
		"licenseplate_motion.jpg", "orange.jpg", "apple.jpg", "graf1.png"} {
		add(RoleBench, KindScene, opencv+"data/"+n)
	}
	add(RoleBench, KindScene, opencv+"hfs/data/001.jpg", opencv+"hfs/data/002.jpg", opencv+"text/scenetext01.jpg",
		opencv+"text/scenetext03.jpg", opencv+"text/scenetext05.jpg", opencv+"alphamat/input_images/plant.jpg",
		"photos/sklearn/china.jpg", "photos/sklearn/flower.jpg", "testdata/coffee.png", "testdata/grass.png",
		"photos/darknet/kite.jpg")
	for _, n := range []string{"chair", "pillow", "cup", "spoons", "knife", "pan", "blackslate", "bulb", "pencil", "weighingMachine",
		"erasers", "baseball", "bucket", "plate", "volleyball", "buffetset", "igloo"} {
		add(RoleBench, KindScene, gcompris+"categorization/resource/images/others/"+n+".webp")
	}
	for _, n := range []string{"cathedral", "christTheRedeemer", "monument3", "victoriaMemorial", "zimniPalace", "empireState",
		"colosseum", "jucheTower", "monument1", "statueOfLiberty", "tajMahal", "mountRushmore", "usCapitol",
		"leaningTowerOfPisa", "greatPyramid", "bayterek", "burj", "monument2", "eiffelTower", "kutubMinar", "leMusee",
		"arcDeTriomphe", "parthenon", "operaHouse", "IndiaGate", "brandenburgGate", "greatWall"} {
		add(RoleBench, KindScene, gcompris+"categorization/resource/images/monuments/"+n+".webp")
	}

	// The reference set: other animals (Tux Paint's cut-out photographs,
	// pasted onto the reference scenes), scenes from two videos and a few
	// street photographs. Its cats and dogs are CIFAR-10 images (see
	// ReferenceConfig).
	ps = append(ps, Photo{Path: opencv + "data/vtest.avi", Kind: KindScene, Role: RoleReference, Every: 25},
		Photo{Path: "videos/small.mp4", Kind: KindScene, Role: RoleReference, Every: 10})
	add(RoleReference, KindScene, opencv+"text/scenetext02.jpg", opencv+"text/scenetext04.jpg", opencv+"text/scenetext06.jpg",
		opencv+"data/left01.jpg")
	for _, p := range tuxpaintAnimals {
		ps = append(ps, Photo{Path: "photos/tuxpaint/" + p, Kind: KindOther, Role: RoleReference, Cutout: true})
	}
	return ps
}

// tuxpaintAnimals are the cut-out animal photographs of Tux Paint's stamps
// (its drawings and the dog, a benchmark individual, left out).
var tuxpaintAnimals = []string{
	"amphibians/frog-1.png", "amphibians/frog.png",
	"birds/adelaide-rosella.png", "birds/albino_peahen.png", "birds/blackbird.png", "birds/crow.png",
	"birds/crowned_crane.png", "birds/cuckoo.png", "birds/drake.png", "birds/duck.png", "birds/gander.png",
	"birds/guineafowl.png", "birds/helmeted_guineafowl.png", "birds/hen.png", "birds/heron_greatblue.png",
	"birds/heron_greatblue_flying.png", "birds/lark.png", "birds/little-penguin.png", "birds/magellanic_penguin.png",
	"birds/magpie.png", "birds/nandou.png", "birds/ostrich.png", "birds/owl.png", "birds/peacock.png",
	"birds/pelican.png", "birds/penguin.png", "birds/pigeon.png", "birds/pink_flamingo.png", "birds/quetzal.png",
	"birds/rainbow-lorikeet.png", "birds/rooster.png", "birds/seagull.png", "birds/silver-gull.png",
	"birds/tucan.png", "birds/turkey.png", "birds/vulture.png", "birds/chicken_profile.png",
	"fish/bluegroper.png", "fish/butterflyfish.png", "fish/clownfish.png", "fish/coraltrout.png",
	"fish/dolphinfish.png", "fish/lionfish.png", "fish/lobster.png", "fish/moonwrasse.png", "fish/seahorse.png",
	"fish/shrimp.png", "fish/stripedfish.png",
	"insects/Brown_slug.png", "insects/Woodlouse.png", "insects/bee.png", "insects/fly.png", "insects/grasshopper.png",
	"insects/hornet.png", "insects/hoverfly.png", "insects/mantis.png", "insects/xanthia.png",
	"lizards/iguana.png",
	"mammals/apes/chimp.png", "mammals/apes/gorilla.png", "mammals/apes/tamarin_emperor.png",
	"mammals/aquatic/dolphin.png", "mammals/aquatic/orca.png", "mammals/aquatic/otter.png",
	"mammals/aquatic/sea_lion.png", "mammals/aquatic/whale.png", "mammals/badger.png", "mammals/bears/bear.png",
	"mammals/bears/european-bear.png", "mammals/bovines/bison.png", "mammals/bovines/bull.png",
	"mammals/bovines/cow.png", "mammals/bovines/cow_white.png", "mammals/bovines/gnu-baby-stand.png",
	"mammals/bovines/gnu-baby.png", "mammals/bovines/gnu-sitting.png", "mammals/bovines/gnu-stand.png",
	"mammals/bovines/goat.png", "mammals/bovines/indian_blackbuck.png", "mammals/bovines/mountaingoat.png",
	"mammals/bovines/ram.png", "mammals/bovines/sheep.png", "mammals/bovines/sheep_lamb.png",
	"mammals/bovines/yak.png", "mammals/bovines/zebu.png", "mammals/camel/camel.png", "mammals/camel/dromedary.png",
	"mammals/cats/lion-2.png", "mammals/cats/lion.png", "mammals/cats/tiger.png", "mammals/cats/tiger_sumatran.png",
	"mammals/deer/caribou.png", "mammals/deer/deer.png", "mammals/deer/doe.png", "mammals/deer/wapiti.png",
	"mammals/dogs/dingo.png", "mammals/dogs/fox.png", "mammals/echidna.png", "mammals/elephant.png",
	"mammals/equines/donkey.png", "mammals/equines/donkey_eating.png", "mammals/equines/horse.png",
	"mammals/equines/zebra.png", "mammals/ferret.png", "mammals/giraffe.png", "mammals/hedgehog.png",
	"mammals/hippopotamus.png", "mammals/pig.png", "mammals/pig_golden.png", "mammals/pig_golden2.png",
	"mammals/rabbit_little.png", "mammals/rhino_black.png", "mammals/rodents/beaver.png",
	"mammals/rodents/capybara.png", "mammals/rodents/marmot.png", "mammals/rodents/mouse.png",
	"mammals/rodents/rabbit-2.png", "mammals/rodents/rabbit.png", "mammals/rodents/rat.png",
	"mammals/rodents/squirrel.png", "mammals/wildboar.png",
	"marsupials/kangaroo.png", "marsupials/koala.png", "marsupials/wombat.png",
	"shellfish/abalone.png", "shellfish/murray-mussel.png",
}

// PhotoSetMissing says what `make deps` has not fetched yet (nil when
// every photograph is there), with the command that fetches it.
func PhotoSetMissing(deps string, ps []Photo) error {
	var missing []string
	for _, p := range ps {
		if _, err := os.Stat(filepath.Join(deps, p.Path)); err != nil {
			missing = append(missing, p.Path)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("%d photographs are missing under %s (first: %s): run `make deps` (or `scripts/deps.sh testdata videos photos`)",
		len(missing), deps, missing[0])
}

// photoSetKey identifies a photo set's list (paths, kinds, roles), for
// the embedding caches.
func photoSetKey(ps []Photo) string {
	h := sha256.New()
	for _, p := range ps {
		fmt.Fprintf(h, "%s|%s|%s|%s|%v|%d\n", p.Path, p.Kind, p.Individual, p.Role, p.Cutout, p.Every)
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// Individuals lists the benchmark's cat and dog individuals by kind.
func Individuals(ps []Photo) (cats, dogs []string) {
	for _, p := range ps {
		switch {
		case p.Individual == "" || p.Role != RoleBench:
		case p.Kind == KindCat:
			cats = append(cats, p.Individual)
		case p.Kind == KindDog:
			dogs = append(dogs, p.Individual)
		}
	}
	return cats, dogs
}

// isVideo reports whether a path names a video the set reads frames of.
func isVideo(p string) bool {
	ext := strings.ToLower(filepath.Ext(p))
	return slices.Contains([]string{".avi", ".mp4"}, ext)
}
