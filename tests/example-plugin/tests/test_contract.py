"""The unigen model contract on this plugin's model, from the kit that ships with unigen-core."""

from unigen.testing import contract_tests

TestGMMContract = contract_tests("gmm")
