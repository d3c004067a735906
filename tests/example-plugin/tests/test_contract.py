"""The unigen model contract on this plugin's model, from the kit that ships with unigen-core."""

from unigen.plugin import testing

TestGMMContract = testing.contract_tests("gmm")
