package publish

import (
	"os"

	"github.com/cargohold/cargohold/recipe"
)

// Complete fills in what in takes from outside the command line: the recipe at recipeFile ("": none)
// and the environment's auth file (REGISTRY_AUTH_FILE, the least specific statement of one: below
// the flags and the recipe, see fetchSettings).
func (in *Input) Complete(recipeFile string) error {
	in.EnvAuthFile = os.Getenv("REGISTRY_AUTH_FILE")
	if recipeFile == "" {
		return nil
	}
	r, err := recipe.Load(recipeFile)
	if err != nil {
		return err
	}
	in.Recipe = r
	return nil
}
